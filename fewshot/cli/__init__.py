"""The ``fewshot`` command line: a thin layer of subcommands over the library.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a function taking the
parsed arguments. Bad input raised by the library as ``ValueError``, ``TypeError`` or
``OSError`` (``FileNotFoundError`` included) is printed as one line, without a traceback,
and the process exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser", "SUBCOMMANDS"]

#: Subcommand modules, in the order ``fewshot --help`` lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "data",
    "extract",
    "finetune",
    "evaluate",
    "compare",
    "table",
    "plot",
    "analyze",
    "sweep",
    "demo",
)

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="fewshot",
        description="Fine-tune backbones, extract frozen features, evaluate few-shot episodes "
        "and compare objectives with paired statistics.",
    )
    from fewshot import __version__

    parser.add_argument("--version", action="version", version=f"fewshot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"fewshot.cli._{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fewshot`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except KeyboardInterrupt:
        print("fewshot: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in message:
            message = f"{message}: {exc.filename}"
        print(f"fewshot {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    return int(status or 0)
