"""``fewshot finetune``: fine-tune a backbone on base classes with SCHaNe or a baseline.

The setting flags are generated from the fields of
:class:`~fewshot.training.config.FinetuneConfig`, so every setting can be given on the command
line and each default is stated once, in the dataclass. A field ``name`` becomes
``--name`` (``_`` -> ``-``); its help text, group and choices come from (in this order):

1. the field's metadata, ``dataclasses.field(..., metadata={"help": ..., "choices": ...,
   "flags": ("--x", "--y"), "metavar": ...})`` -- all keys optional;
2. the ``name: text`` entry in the class docstring (its section heading, e.g.
   ``Optimisation:``, is the help group);
3. :data:`CHOICES` and :data:`FLAGS` below (registry names, kept torch-free).

The type follows the annotation: ``int``/``float``/``str`` (``| None`` allowed), ``bool``
(``--x``/``--no-x``), ``dict[...]`` (``--x KEY=VALUE ...``, values read as TOML, e.g.
``--objective-options beta=1.0``) and ``tuple[float, float]`` (``--x LO HI``). A new field of
another type must say how it is parsed with ``metadata={"type": callable, "nargs": ...}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from typing import Any

__all__ = ["register", "run", "CHOICES", "FLAGS", "config_flags"]

_S = argparse.SUPPRESS  # flags that are not given do not override the config file

#: Extra spellings of some settings' flags (the first is shown first in ``--help``).
FLAGS: dict[str, tuple[str, ...]] = {
    "num_workers": ("--workers", "--num-workers"),
    "data_root": ("--data-root", "--root"),
}


def _choices() -> dict[str, tuple[str, ...]]:
    from fewshot._names import AUGMENT_POLICIES, DATASET_NAMES, OBJECTIVE_NAMES
    from fewshot.training.config import OPTIMIZERS, SCHEDULERS

    return {
        "optimizer": OPTIMIZERS,
        "objective": OBJECTIVE_NAMES,
        "scheduler": SCHEDULERS,
        "augment": AUGMENT_POLICIES,
        "dataset": DATASET_NAMES,
    }


#: Registry choices by setting (filled on first use; torch-free).
CHOICES: dict[str, tuple[str, ...]] = {}

_DESCRIPTION = (
    "Fine-tune a timm backbone on the base classes of a benchmark with "
    "(1 - lam) CE + lam * contrastive, two AutoAugment views per image, timm's optimiser (AdamW by "
    "default) and a cosine schedule; hold out a seeded part of the base images for early stopping; write "
    "OUT/best and OUT/last checkpoints (for `fewshot extract --checkpoint OUT/best`), "
    "OUT/log.jsonl and OUT/manifest.json. Settings come from --config (TOML; YAML only if "
    "PyYAML is installed, it is not a dependency) and flags override it; the defaults shown "
    "are FinetuneConfig's. Several processes: `torchrun --nproc_per_node=N -m fewshot "
    "finetune ...` (DDP; NCCL on GPUs, gloo on CPU); --batch-size is the global batch and "
    "the contrastive term sees all of it. There is no gradient accumulation: it would not add "
    "negatives to the contrastive term."
)


def _docstring_entries(cls: type) -> dict[str, tuple[str, str]]:
    """``{field: (section, text)}`` from a Google-style attribute list in ``cls.__doc__``."""
    entries: dict[str, tuple[str, str]] = {}
    section, current, names = "settings", [], []
    fields = {f.name for f in dataclasses.fields(cls)}

    def flush() -> None:
        if names:
            text = " ".join(" ".join(current).split())
            text = re.sub(r"``([^`]*)``", r"\1", text).replace("**", "")
            text = re.sub(r":(?:class|func|data|meth):`~?([^`]*)`", r"\1", text)
            for n in names:
                entries[n] = (section, text)

    import inspect

    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        stripped = line.strip()
        head = re.match(r"^([A-Z].*):\s*$", stripped)
        entry = re.match(r"^([a-z_][a-z0-9_, ]*):\s*(.*)$", stripped)
        if head and not line[:1].isspace():
            flush()
            names, current = [], []
            section = re.sub(r"\s*\(.*\)\s*$", "", head.group(1)).strip().lower()
            if section.startswith(("raises", "returns", "example")):
                section = "settings"
        elif entry and all(n.strip() in fields for n in entry.group(1).split(",")):
            flush()
            names = [n.strip() for n in entry.group(1).split(",")]
            current = [entry.group(2)]
        elif names and stripped:
            current.append(stripped)
    flush()
    return entries


def _key_value(text: str) -> tuple[str, Any]:
    import tomllib

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value  # a bare word is a string
    return key.strip(), parsed


class _DictAction(argparse.Action):
    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        setattr(namespace, self.dest, dict(values))


def _drop_restated_default(text: str, field: dataclasses.Field) -> str:
    """The docstring entry without its own statement of the default (the dataclass's is
    appended instead), e.g. ``"... in [0, 1] (0.9)."`` -> ``"... in [0, 1]."``."""
    default = field.default
    if default is dataclasses.MISSING or default is None or isinstance(default, bool):
        return text

    def same(token: str) -> bool:
        token = token.strip().strip('"').strip("'")
        if isinstance(default, str):
            return token == default
        try:
            return float(token) == float(default)
        except ValueError:
            return False

    def sub(m: re.Match) -> str:
        head, rest = m.group(1), m.group(2)
        if not same(head):
            return m.group(0)
        return "" if rest == ")" else "("

    text = re.sub(
        r"\s?\(([^(),;]+)(\)|[,;]\s*)",
        lambda m: sub(m) if m.group(2) == ")" else (" (" if same(m.group(1)) else m.group(0)),
        text,
    )
    return re.sub(r"\s+([.,;])", r"\1", text).strip()


def _default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = field.default_factory()  # type: ignore[misc]
    else:
        return "required, here or in --config"
    if value is None:
        return "default: unset"
    if isinstance(value, bool):
        return f"default: {'on' if value else 'off'}"
    if isinstance(value, dict):
        return "default: none" if not value else f"default: {value}"
    return f"default: {value}"


def config_flags(cls: type | None = None) -> list[dict[str, Any]]:
    """One record per config field: ``name``, ``flags``, ``group`` and ``kwargs`` for
    ``add_argument`` (what :func:`register` adds; tests check every field is covered).

    Raises:
        TypeError: a field whose annotation has no known parser and no ``metadata["type"]``.
    """
    if cls is None:
        from fewshot.training.config import FinetuneConfig as cls  # type: ignore[no-redef]
    if not CHOICES:
        CHOICES.update(_choices())
    docs = _docstring_entries(cls)
    records = []
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata or {})
        section, text = docs.get(f.name, ("other settings", ""))
        help_text = meta.get("help") or _drop_restated_default(text, f) or f"the {f.name} setting of FinetuneConfig"
        help_text = f"{help_text} ({_default_text(f)})".replace("%", "%%")
        flags = tuple(meta.get("flags") or FLAGS.get(f.name) or (f"--{f.name.replace('_', '-')}",))
        kwargs: dict[str, Any] = {"dest": f.name, "default": _S, "help": help_text}
        annotation = str(f.type).replace(" ", "")
        base = annotation.removesuffix("|None")
        if "type" in meta:
            kwargs["type"] = meta["type"]
            if "nargs" in meta:
                kwargs["nargs"] = meta["nargs"]
        elif base == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif base in ("int", "float", "str"):
            kwargs["type"] = {"int": int, "float": float, "str": str}[base]
        elif base.startswith("dict["):
            kwargs.update(type=_key_value, nargs="+", action=_DictAction, metavar="KEY=VALUE")
        elif base == "tuple[float,float]":
            kwargs.update(type=float, nargs=2, metavar=("LO", "HI"))
        else:
            raise TypeError(
                f"FinetuneConfig.{f.name}: no command-line parser for {f.type!r}; give "
                "dataclasses.field(metadata={'type': ..., 'nargs': ...})"
            )
        choices = meta.get("choices") or CHOICES.get(f.name)
        if choices:
            kwargs["choices"] = tuple(choices)
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        elif "choices" not in kwargs and "metavar" not in kwargs and "action" not in kwargs:
            kwargs["metavar"] = f.name.upper()
        records.append({"name": f.name, "flags": flags, "group": section, "kwargs": kwargs})
    return records


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a timm backbone on the base classes (CE, SCHaNe, SupCon, SimCLR, H-SCL)",
        description=_DESCRIPTION,
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML file of settings (keys as the long flags, '-' or '_'); flags override it",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue the run in RUN_DIR from RUN_DIR/last (model, optimiser, schedule, data "
        "position, RNG); settings given must match the run's",
    )
    groups: dict[str, Any] = {}
    for rec in config_flags():
        group = groups.get(rec["group"])
        if group is None:
            group = groups[rec["group"]] = p.add_argument_group(rec["group"])
        group.add_argument(*rec["flags"], **rec["kwargs"])
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="S",
        default=_S,
        help="train one run per training seed into OUT/seed-S/ (the replicates of this objective; "
        "an existing run there is resumed, a finished one kept); conflicts with --seed and --resume",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fewshot.training import finetune, finetune_seeds, load_config, resume_config
    from fewshot.training.config import read_config_file

    given = {k: v for k, v in vars(args).items() if k not in ("config", "resume", "command", "func", "seeds")}
    seeds = getattr(args, "seeds", None)
    if seeds is not None:
        if args.resume is not None or "seed" in given:
            raise ValueError(
                "--seeds conflicts with --resume and --seed (each seed's run in OUT/seed-S/ is resumed when it exists)"
            )
        config = load_config(args.config, **given)
        try:
            results = finetune_seeds(config, seeds)
        except FloatingPointError as exc:
            print(f"fewshot finetune: {exc}", file=sys.stderr)
            return 1
        if int(os.environ.get("RANK", "0") or 0) == 0:
            for result in results:
                print(f"{result.run_dir.name}: {result.summary()}")
        return 0
    if args.resume is not None:
        overrides = dict(read_config_file(args.config)) if args.config else {}
        overrides.update(given)
        if "out" in overrides and str(overrides["out"]) != str(args.resume):
            raise ValueError(f"--out {overrides['out']} conflicts with --resume {args.resume}")
        config = resume_config(args.resume, **overrides)
    else:
        config = load_config(args.config, **given)
    try:
        result = finetune(config, resume=args.resume is not None)
    except FloatingPointError as exc:  # diverged: a failed run, not bad input
        print(f"fewshot finetune: {exc}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0") or 0) == 0:
        print(result.summary())
    return 0
