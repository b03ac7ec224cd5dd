"""The ``fewshot`` command line: a thin layer of subcommands over the library.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a function taking the
parsed arguments. Building the parser imports no torch (choices come from the torch-free
name lists in :mod:`fewshot._names`), so ``--help`` and ``--version`` answer at once.

Bad input ends a command with one line ``fewshot <cmd>: error: ...`` on stderr and exit
status 2: usage errors found by argparse, and bad input raised by the library as
``ValueError``, ``TypeError`` or ``OSError`` (``FileNotFoundError`` included) or as one of the
errors of damaged files (:data:`INPUT_ERRORS`). A closed output pipe (``fewshot ... | head``)
ends quietly with status 141, as if killed by SIGPIPE.

The library logs its progress (``logging``) rather than printing it; while a command runs,
the INFO records of :mod:`fewshot.training` (the epoch lines of ``finetune``, also inside
``demo`` and ``sweep``) are shown on stdout as plain lines.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import pickle
import sys
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from typing import NoReturn

__all__ = ["main", "build_parser", "SUBCOMMANDS", "EXIT_USAGE", "INPUT_ERRORS", "Parser"]

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
EXIT_PIPE = 141

#: Exceptions that mean "bad input" when they escape a subcommand: reported in one line, exit 2.
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # json.JSONDecodeError, UnicodeDecodeError included
    TypeError,
    OSError,  # FileNotFoundError, gzip.BadGzipFile included
    EOFError,  # truncated gzip / pickle
    zipfile.BadZipFile,
    zlib.error,
    pickle.UnpicklingError,
    MemoryError,  # a damaged file that asks for a huge allocation
)


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``fewshot <cmd>: error: ...`` and exit 2."""

    def error(self, message: str) -> NoReturn:
        first = message.splitlines()[0] if message else "invalid arguments"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {first} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered (imports no torch)."""
    parser = Parser(
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


def error_message(exc: BaseException) -> str:
    """The first line of ``exc``'s message, with the file it concerns when it names one."""
    text = str(exc)
    message = text.splitlines()[0] if text.strip() else type(exc).__name__
    if isinstance(exc, MemoryError):
        message = f"out of memory reading the input ({message}); is a file damaged?"
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in message:
        message = f"{message}: {exc.filename}"
    return message


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fewshot`` console script; returns the exit status."""
    args: argparse.Namespace | None = None
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:  # name the subcommand whose flags these are not
            owner = _subparser(parser, args)
            owner.error(f"unrecognized arguments: {' '.join(extra)}")
        with _training_progress_on_stdout():
            status = args.func(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        print("fewshot: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_PIPE
    except INPUT_ERRORS as exc:
        command = getattr(args, "command", None)
        prog = f"fewshot {command}" if command else "fewshot"
        print(f"{prog}: error: {error_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    return int(status or 0)


class _StdoutHandler(logging.StreamHandler):
    """Log records as plain lines on stdout; a closed pipe propagates (exit status 141)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(logging.Formatter("%(message)s"))

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            raise
        super().handleError(record)


@contextlib.contextmanager
def _training_progress_on_stdout() -> Iterator[None]:
    """Show the INFO records of ``fewshot.training`` on stdout while a command runs."""
    logger = logging.getLogger("fewshot.training")
    handler, level = _StdoutHandler(), logger.level
    handler.setLevel(logging.INFO)
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _subparser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost subcommand parser ``args`` went through (``fewshot data check``...)."""
    current = parser
    for dest in ("command", "data_command"):
        actions = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, dest, None)
        if not actions or name is None or name not in actions[0].choices:
            break
        current = actions[0].choices[name]
    return current


def _silence_stdout() -> None:
    # the reader went away: point stdout at /dev/null so the interpreter's final flush is quiet
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
