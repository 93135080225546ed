"""``ntkscope train``: train one network by full-batch gradient descent and measure how much its
NTK changes (paper Section 4).

Loss ``L = 1/(2S) sum_s (f(x_s) - y_s)^2`` on ``S`` samples of a data set, updates
``theta <- theta - lr grad L`` with a fixed ``--lr`` or ``--lr-scale s`` (``lr = s * 2S /
lambda_max(Theta_0)``) or both (``lr = min(--lr, s lr_max)``), early stopping after
``--patience`` steps without a decrease of at least ``--min-delta`` (paper: 100 and 1e-7), at
most ``--max-steps`` updates (paper 1e5). Reports the
relative change ``|Theta_t - Theta_0|_F / |Theta_0|_F`` at the ``--snapshots`` reached and at
the end; ``--plot`` draws the loss curve. Algorithm and rules: :mod:`ntkscope.training`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ntkscope.cli import common
from ntkscope.datasets import load_dataset
from ntkscope.defaults import DTYPE_NAMES, LEARNING_RATE, MAX_STEPS, MIN_DELTA, PATIENCE, SNAPSHOTS
from ntkscope.io import check_output_file
from ntkscope.validation import NtkscopeInputError

if TYPE_CHECKING:
    from ntkscope.training import TrainResult



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a network by gradient descent and measure its NTK change",
        description="Train one network by full-batch gradient descent on the MSE loss over S "
        "samples of a data set and report the relative NTK change "
        "|Theta_t - Theta_0|_F / |Theta_0|_F at the snapshot steps and at the end "
        "(paper Section 4).",
    )
    common.add_network_args(p)
    common.add_data_args(p, "mnist", samples=128, what="training data (S samples, class-balanced)")
    p.add_argument("--target", default=None,
                   help="targets: parity (default for images: +1 even, -1 odd digit), "
                   "pair:A,B (+1 class A, -1 class B), sign (gaussian, its default)")
    p.add_argument("--lr", type=common.FLOAT, default=None,
                   help=f"fixed learning rate (default {LEARNING_RATE:g}, the paper's)")
    p.add_argument("--lr-scale", type=common.FLOAT, default=None, metavar="S",
                   help="S * lr_max, lr_max = 2 S / lambda_max(Theta_0); with --lr: a cap, "
                   "lr = min(--lr, S * lr_max)")
    p.add_argument("--max-steps", type=common.INT, default=MAX_STEPS, metavar="N",
                   help=f"most gradient steps (default {MAX_STEPS})")
    p.add_argument("--patience", type=common.INT, default=PATIENCE, metavar="N",
                   help=f"early stopping: steps without improvement (default {PATIENCE})")
    p.add_argument("--min-delta", type=common.FLOAT, default=MIN_DELTA, metavar="F",
                   help=f"early stopping: smallest decrease that counts (default {MIN_DELTA:g})")
    snapshots = ",".join(map(str, SNAPSHOTS))
    p.add_argument("--snapshots", default=snapshots, metavar="T1,T2,...",
                   help=f"steps at which the NTK change is measured (default {snapshots})")
    common.add_seed_arg(p, "the samples and of the network")
    p.add_argument("--dtype", default="float64", choices=sorted(DTYPE_NAMES),
                   help="floating-point type (default float64)")
    common.add_device_arg(p, "the training")
    p.add_argument("--threads", type=common.INT, default=1, metavar="N",
                   help="torch CPU threads (default 1: the per-layer products are small and "
                   "more threads mostly add synchronization stalls; try more for M >= 1024)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="write the loss curve (log scale) with the NTK changes marked")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    common.add_json_arg(p)
    p.set_defaults(func=run)


def parse_snapshots(text: str) -> list[int]:
    """``"10,100,1000"`` -> ``[10, 100, 1000]``; ``""`` -> ``[]`` (checked by
    :class:`ntkscope.training.Recording`)."""
    parts = [s.strip() for s in str(text).split(",")] if str(text).strip() else []
    values: list[int] = []
    for part in parts:
        try:
            values.append(int(part))
        except ValueError:
            raise NtkscopeInputError(
                f"snapshots: expected comma-separated step numbers, got {text!r}"
            ) from None
    return values


def plot_training(result: TrainResult, path: Path) -> Path:
    """Loss curve (log y) with the snapshot steps marked and the NTK changes annotated, titled
    with :meth:`TrainResult.describe`; written atomically."""
    from ntkscope.plotting import plt, save_figure  # matplotlib only when plotting

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    steps, losses = result.loss_steps, result.losses
    good = np.isfinite(losses) & (losses > 0)
    ax.plot(steps[good], losses[good], color="C0", lw=1.2, label="training loss")
    ax.set_yscale("log")
    ax.set_xlabel("gradient descent step")
    ax.set_ylabel("loss 1/(2S) sum (f - y)^2")
    for t in result.ntk_change:
        ax.axvline(t, color="0.6", lw=0.8, ls=":")
    lines = [f"t = {t}: {v:.3g}" for t, v in result.ntk_change.items()]
    final = result.final_ntk_change
    lines.append(f"final (t = {result.steps}): " + ("-" if final is None else f"{final:.3g}"))
    ax.text(0.98, 0.97, "|Θt − Θ0|_F / |Θ0|_F\n" + "\n".join(lines), transform=ax.transAxes,
            ha="right", va="top", fontsize=8,
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85})
    ax.set_title(f"{result.describe()}\n{result.stop_reason} after {result.steps} steps",
                 fontsize=9)
    return save_figure(fig, path)


def run(args: argparse.Namespace) -> int:
    import torch

    from ntkscope.training import Execution, LearningRate, Recording, StoppingRule, train

    # The library validates every value when the configs are built (before any work); the
    # messages name the flags.
    with common.name_flags("lr", "lr_scale", "max_steps", "patience", "min_delta", "threads"):
        rate = LearningRate(args.lr, args.lr_scale)
        stop = StoppingRule(args.max_steps, args.patience, args.min_delta)
        record = Recording(parse_snapshots(args.snapshots))
        execution = Execution(getattr(torch, args.dtype), args.device, args.threads,
                              progress=not args.quiet and stop.max_steps >= 1000)
    plot = None if args.plot is None else check_output_file(args.plot, "plot", (".png",))
    spec = common.network_spec(args)
    data = load_dataset(args.dataset, args.samples, args.seed, target=args.target,
                        data_dir=args.data_dir)
    result = train(spec, data.X, data.y, batch=1, seed=args.seed, rate=rate, stop=stop,
                   record=record, execution=execution).results[0]
    result.data = f"{data.name} ({data.target})"
    if data.note:  # after every check passed: a failing command prints one line only
        print(f"ntkscope train: note: {data.note}", file=sys.stderr)
    if plot is not None:
        plot_training(result, plot)
    common.print_result(result, args.json,
                 extra=[] if plot is None else [("plot written to", str(plot))])
    return 0
