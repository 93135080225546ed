"""Argument types and output helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ntkscope.rendering import Renderable, fmt
from ntkscope.spec import NetworkSpec
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


def add_init_args(p: argparse.ArgumentParser, *, need_sw2: bool = True,
                  required: bool = True) -> None:
    """``--activation``, ``--sigma-w2``, ``--sigma-b2`` (the initialization; ``required=False``
    where another option can replace them: the command checks them itself, default ``None``)."""
    p.add_argument("--activation", required=required, help="relu, tanh or erf")
    if need_sw2:
        p.add_argument("--sigma-w2", type=FLOAT, required=required, metavar="F",
                       help="weight variance sw2 (W ~ N(0, sw2 / fan_in))")
    p.add_argument("--sigma-b2", type=FLOAT, required=required, metavar="F",
                   help="bias variance sb2 (b ~ N(0, sb2))")


def add_shape_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--depth L`` (hidden layers) and ``--width M`` (hidden width), both required unless
    ``required=False``."""
    p.add_argument("--depth", type=INT, required=required, metavar="L", help="hidden layers L")
    p.add_argument("--width", type=INT, required=required, metavar="M", help="hidden width M")


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


NETWORK_FLAGS = ("activation", "sigma_w2", "sigma_b2", "depth", "width")


def add_network_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The network: ``--activation``, ``--sigma-w2``, ``--sigma-b2``, ``--depth``, ``--width``
    (read back with :func:`network_spec`; with ``required=False`` they default to ``None`` and
    :func:`network_spec` names the missing ones)."""
    add_init_args(p, required=required)
    add_shape_args(p, required=required)


def network_spec(args: argparse.Namespace, input_dim: int | None = None) -> NetworkSpec:
    """The :class:`ntkscope.NetworkSpec` of the parsed arguments: built (validated) once here,
    passed as one value to the library.

    Raises:
        NtkscopeInputError: a network flag was not given (parsers built with
            ``add_network_args(p, required=False)``).
    """
    missing = [f"--{n.replace('_', '-')}" for n in NETWORK_FLAGS if getattr(args, n) is None]
    if missing:
        raise NtkscopeInputError(f"the following arguments are required: {', '.join(missing)}")
    return NetworkSpec(args.activation, args.sigma_w2, args.sigma_b2, args.depth, args.width,
                       input_dim)


def add_seed_arg(p: argparse.ArgumentParser, what: str = "the random draws") -> None:
    """``--seed`` (default 0)."""
    p.add_argument("--seed", type=INT, default=0, help=f"seed of {what} (default 0)")


def add_data_args(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str, *,
                  samples: int | None, what: str = "input data", files: bool = False) -> None:
    """``--dataset`` (default ``default``; ``files``: a ``FILE.npz`` too), ``--data-dir`` and
    ``--samples`` (required when ``samples`` is ``None``)."""
    from ntkscope.datasets import DATASET_NAMES

    names = [*DATASET_NAMES, "FILE.npz"] if files else list(DATASET_NAMES)
    p.add_argument("--dataset", default=default, metavar="|".join(names),
                   help=f"{what} (default {default})")
    p.add_argument("--data-dir", metavar="DIR",
                   help="directory with the full idx files, or the CIFAR archive or its "
                   "folder (default: $NTKSCOPE_DATA, the user cache, system directories, else "
                   "the subset shipped with ntkscope)")
    if samples is None:
        p.add_argument("--samples", type=INT, required=True, metavar="S",
                       help="number of samples S")
    else:
        p.add_argument("--samples", type=INT, default=samples, metavar="S",
                       help=f"number of samples S (default {samples})")


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


def print_result(result: Renderable, as_json: bool,
                 extra: Sequence[tuple[str, Any]] = ()) -> None:
    """The one printer: ``result.to_dict()`` as JSON, or its title, its column table (where
    the result has a ``table()``: ``(columns, rows)``), its key/value rows and the command's
    own ``extra`` rows (e.g. the files it wrote; not part of the JSON)."""
    if as_json:
        print_json(result.to_dict())
        return
    print(result.title())
    table = getattr(result, "table", None)
    if table is not None:
        columns, lines = table()
        print("  " + "".join(f"{c:>14}" for c in columns))
        for line in lines:
            print("  " + "".join(f"{v:>14d}" if isinstance(v, int) else f"{v:>14.6g}"
                                 for v in line))
    print_table([*result.rows(), *extra])
    footer = getattr(result, "footer", None)
    if footer is not None:
        for line in footer():
            print(line)


@contextmanager
def name_flags(*names: str) -> Iterator[None]:
    """Library errors about the parameters ``names`` also name their command-line flags:
    ``lr_scale: must be > 0`` becomes ``lr_scale (--lr-scale): must be > 0``. The library
    validates; the command line only says which flag the value came from."""
    try:
        yield
    except NtkscopeInputError as exc:
        text = str(exc)
        for name in names:
            if text.startswith(f"{name}:"):
                flag = "--" + name.replace("_", "-")
                raise NtkscopeInputError(f"{name} ({flag}){text[len(name):]}") from exc
        raise


def print_table(rows: Sequence[tuple[Any, ...]], title: str | None = None) -> None:
    """Key/value table; rows of three entries ``(key, value, note)`` get an aligned value
    column and the note after it."""
    if title:
        print(title)
    if not rows:
        return
    cells = [(str(r[0]), fmt(r[1]), str(r[2]) if len(r) > 2 else None) for r in rows]
    width = max(len(k) for k, _, _ in cells)
    notes = any(n is not None for _, _, n in cells)
    vwidth = max(len(v) for _, v, _ in cells) if notes else 0
    for key, value, note in cells:
        if notes:
            print(f"  {key:<{width}}  {value:<{vwidth}}  {note or ''}".rstrip())
        else:
            print(f"  {key:<{width}}  {value}")
