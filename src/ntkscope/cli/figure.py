"""``ntkscope figure N`` and ``ntkscope reproduce``: the paper's figures as PNG + CSV."""

from __future__ import annotations

import argparse
import time

from ntkscope.cli.common import INT, add_device_arg
from ntkscope.experiments import FIGURES, PRESETS, figure_function
from ntkscope.validation import NtkscopeInputError


def _preset(text: str) -> str:
    if text not in PRESETS:
        raise argparse.ArgumentTypeError(f"unknown preset {text!r}; choose {' or '.join(PRESETS)}")
    return text


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--preset", type=_preset, default="quick",
                   help="quick (coarser grids: minutes on a laptop CPU) or paper (the paper's "
                   "settings: hours; use a GPU box or a cluster)")
    g = p.add_argument_group("sweeps (Figures 1, 2, 7: cells are stored and reused)")
    g.add_argument("--store", default="results/ntkscope.sqlite", metavar="PATH",
                   help="results store (SQLite; default results/ntkscope.sqlite)")
    g.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local worker processes (default) or Dask tasks")
    g.add_argument("--workers", type=INT, default=None, metavar="N",
                   help="worker processes (default: all cores)")
    g.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="existing Dask scheduler (with --executor dask); default: a "
                   "LocalCluster for the run")
    g.add_argument("--retry-failed", action="store_true", help="recompute failed cells")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_arg(g, "every cell")


def register(sub: argparse._SubParsersAction) -> None:
    ids = ", ".join(sorted(FIGURES))
    p = sub.add_parser("figure", help="draw one figure of the paper (PNG + CSV of its numbers)",
                       description=f"Writes DIR/figN.png and DIR/figN.csv. Available: {ids}.")
    p.add_argument("number", metavar="N", help=f"figure number ({ids})")
    _add_common(p)
    p.set_defaults(func=run_figure)

    r = sub.add_parser("reproduce", help="draw every implemented figure",
                       description=f"Draws every implemented figure of the paper ({ids}) into "
                       "DIR; rerunning reuses every stored cell.")
    _add_common(r)
    r.set_defaults(func=run_reproduce)


def _options(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ntkscope.experiments.common import SweepOptions

    if args.scheduler is not None and args.executor != "dask":
        raise NtkscopeInputError("scheduler: --scheduler needs --executor dask")
    device = args.device
    if device != "cpu":
        from ntkscope.networks import check_device  # torch: only for a GPU run

        device = str(check_device(device))
    return SweepOptions(store=args.store, executor=args.executor, workers=args.workers,
                        scheduler=args.scheduler, retry_failed=args.retry_failed,
                        quiet=args.quiet, device=device)


def _draw(fig_id: str, args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    paths = figure_function(fig_id)(args.out, preset=args.preset, options=_options(args))
    names = ", ".join(str(p) for p in paths)
    print(f"figure {fig_id}: {names} ({time.perf_counter() - t0:.1f} s)", flush=True)


def run_figure(args: argparse.Namespace) -> int:
    if args.number not in FIGURES:
        raise NtkscopeInputError(
            f"N: unknown figure {args.number!r}; available: {', '.join(sorted(FIGURES))}"
        )
    _draw(args.number, args)
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    for fig_id in FIGURES:
        _draw(fig_id, args)
    print(f"all figures in {args.out} ({time.perf_counter() - t0:.1f} s)")
    return 0
