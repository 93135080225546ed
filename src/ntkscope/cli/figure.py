"""``ntkscope figure N`` and ``ntkscope reproduce``: the paper's figures as PNG + CSV."""

from __future__ import annotations

import argparse
import time

from ntkscope.experiments import FIGURES, PRESETS, figure_function
from ntkscope.validation import NtkscopeInputError


def _preset(text: str) -> str:
    if text not in PRESETS:
        raise argparse.ArgumentTypeError(f"unknown preset {text!r}; choose {' or '.join(PRESETS)}")
    return text


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--preset", type=_preset, default="quick",
                   help="quick (laptop CPU, minutes) or paper (the paper's settings)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("figure", help="draw one figure of the paper (PNG + CSV of its numbers)",
                       description="Writes DIR/figN.png and DIR/figN.csv. Available: "
                       + ", ".join(FIGURES))
    p.add_argument("number", metavar="N", help=f"figure number ({', '.join(FIGURES)})")
    _add_common(p)
    p.set_defaults(func=run_figure)

    r = sub.add_parser("reproduce", help="draw every implemented figure",
                       description="Draws every implemented figure of the paper into DIR.")
    _add_common(r)
    r.set_defaults(func=run_reproduce)


def _draw(fig_id: str, args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    paths = figure_function(fig_id)(args.out, preset=args.preset)
    names = ", ".join(str(p) for p in paths)
    print(f"figure {fig_id}: {names} ({time.perf_counter() - t0:.1f} s)")


def run_figure(args: argparse.Namespace) -> int:
    if args.number not in FIGURES:
        raise NtkscopeInputError(
            f"N: unknown figure {args.number!r}; available: {', '.join(FIGURES)}"
        )
    _draw(args.number, args)
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    for fig_id in FIGURES:
        _draw(fig_id, args)
    return 0
