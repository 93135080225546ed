"""Argument types and output helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np

from ntkscope.validation import NtkscopeInputError


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


FLOAT = _number
INT = _integer


def add_init_args(p: argparse.ArgumentParser, *, need_sw2: bool = True) -> None:
    """``--activation``, ``--sigma-w2``, ``--sigma-b2`` (the initialization)."""
    p.add_argument("--activation", required=True, help="relu, tanh or erf")
    if need_sw2:
        p.add_argument("--sigma-w2", type=FLOAT, required=True, metavar="F",
                       help="weight variance sw2 (W ~ N(0, sw2 / fan_in))")
    p.add_argument("--sigma-b2", type=FLOAT, required=True, metavar="F",
                   help="bias variance sb2 (b ~ N(0, sb2))")


def add_shape_args(p: argparse.ArgumentParser) -> None:
    """``--depth L`` (hidden layers) and ``--width M`` (hidden width), both required."""
    p.add_argument("--depth", type=INT, required=True, metavar="L", help="hidden layers L")
    p.add_argument("--width", type=INT, required=True, metavar="M", help="hidden width M")


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def add_device_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup,
                   what: str = "the computation") -> None:
    p.add_argument("--device", default="cpu", metavar="cpu|cuda",
                   help=f"where {what} runs: cpu (default) or cuda (cuda:N for GPU N)")


def jsonable(value: Any, name: str = "json") -> Any:
    """Convert NumPy scalars/arrays to Python; non-finite floats are refused (never written).

    Raises:
        NtkscopeInputError: a non-finite number (the message names its key, e.g.
            ``kappa_ratio``): the command line turns it into a one-line error, exit code 2.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), name)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        if not math.isfinite(f):
            raise NtkscopeInputError(
                f"{name}: is {f}, which JSON cannot represent (degenerate or out-of-range "
                "input); refusing to write it"
            )
        return f
    if isinstance(value, np.integer):
        return int(value)
    return value


def print_json(obj: Any) -> None:
    json.dump(jsonable(obj), sys.stdout, indent=2)
    sys.stdout.write("\n")


def print_table(rows: list[tuple[str, Any]], title: str | None = None) -> None:
    """Two-column key/value table."""
    if title:
        print(title)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {fmt(value)}")


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.10g}"
    return str(value)
