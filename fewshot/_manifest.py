"""Provenance manifests written next to every output."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["environment_info", "git_sha", "make_manifest"]

_LIBRARIES = ("fewshot", "numpy", "scipy", "scikit-learn", "pandas", "torch", "torchvision", "timm")


def git_sha(cwd: str | Path | None = None) -> str | None:
    """The current git commit of ``cwd`` (default: this package's checkout), or None."""
    cwd = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info() -> dict[str, Any]:
    """Python, platform and library versions."""
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "git_sha": git_sha(),
    }


def make_manifest(kind: str, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A manifest: what was run (``kind``), the resolved config, environment and extras."""
    return {
        "kind": kind,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "environment": environment_info(),
        **extra,
    }
