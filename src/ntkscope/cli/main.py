"""The ``ntkscope`` command line.

Each subcommand lives in its own module of :mod:`ntkscope.cli` exposing
``register(subparsers)``; the module sets ``func`` on its parser. Bad input anywhere
(:class:`~ntkscope.validation.NtkscopeInputError`) becomes a one-line message on stderr and
exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from typing import NoReturn

from ntkscope._version import __version__
from ntkscope.validation import NtkscopeInputError

# Subcommand modules, in the order `ntkscope --help` lists them.
COMMAND_MODULES = ("theory", "phase", "eoc", "figure", "results", "ntk", "kernel",
                   "ntk_variance", "variance",
                   "data", "train", "check")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``prog: error: message (see --help)``), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ntkscope",
        description="Does NTK theory describe this finite network? Mean-field theory, "
        "empirical NTKs and the figures of Seleznova & Kutyniok.",
    )
    parser.add_argument("--version", action="version", version=f"ntkscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        import_module(f"ntkscope.cli.{name}").register(sub)
    return parser


def _out_of_memory(exc: BaseException) -> bool:
    """NumPy's ``MemoryError`` or torch's allocator failure (a ``RuntimeError``)."""
    text = str(exc).lower()
    return (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in text or "out of memory" in text)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except NtkscopeInputError as exc:
        print(f"ntkscope {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:  # sizes too large: a message, not a traceback
        if not _out_of_memory(exc):
            raise
        print(f"ntkscope {args.command}: error: not enough memory for these sizes (samples, "
              "width, depth, inits); use smaller ones", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ntkscope {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
