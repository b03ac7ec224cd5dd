"""Provenance manifests written next to every output."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["cpu_info", "environment_info", "git_sha", "make_manifest"]

_LIBRARIES = ("fewshot", "numpy", "scipy", "scikit-learn", "pandas", "torch", "torchvision", "timm")


def git_sha(cwd: str | Path | None = None) -> str | None:
    """The current git commit of ``cwd`` (default: this package's checkout), or None."""
    cwd = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``), or ``"unknown"``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_info() -> dict[str, Any]:
    """What decides which float kernels run on this CPU: its model, the instruction set torch
    dispatches to (``torch.backends.cpu.get_cpu_capability()``, e.g. ``"AVX512"``; overridable
    with ``ATEN_CPU_CAPABILITY``), the logical core count and the thread count torch uses.
    Tables reproduce byte for byte only on the same CPU type and library versions."""
    import os

    info: dict[str, Any] = {"model": cpu_model(), "machine": platform.machine(), "logical_cores": os.cpu_count()}
    try:
        import torch

        info["torch_capability"] = torch.backends.cpu.get_cpu_capability()
        info["torch_threads"] = torch.get_num_threads()
    except (ImportError, AttributeError):  # pragma: no cover - torch is a dependency
        info["torch_capability"] = None
    for var in (
        "ATEN_CPU_CAPABILITY",
        "OMP_NUM_THREADS",
        "OMP_WAIT_POLICY",
        "MKL_CBWR",
        "ONEDNN_MAX_CPU_ISA",
        "FEWSHOT_REUSE_MEMORY",
    ):
        if os.environ.get(var):
            info.setdefault("env", {})[var] = os.environ[var]
    return info


def environment_info() -> dict[str, Any]:
    """Python, platform, CPU (:func:`cpu_info`) and library versions."""
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "versions": versions,
        "git_sha": git_sha(),
    }


def make_manifest(kind: str, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A manifest: what was run (``kind``), the resolved config, environment and extras."""
    return {
        "kind": kind,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": config,
        "environment": environment_info(),
        **extra,
    }
