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

from ntkscope.cli.common import (
    FLOAT,
    INT,
    add_device_arg,
    add_init_args,
    add_json_arg,
    add_shape_args,
    print_json,
    print_table,
)
from ntkscope.datasets import DATASET_NAMES, load_dataset
from ntkscope.io import check_output_file
from ntkscope.validation import NtkscopeInputError

if TYPE_CHECKING:
    from ntkscope.training import TrainResult

DTYPES = ("float64", "float32")
# torch (via ntkscope.training) is imported when the command runs, not when the CLI starts;
# tests/test_cli_train.py checks this default equals training.DEFAULT_SNAPSHOTS.
DEFAULT_SNAPSHOTS = (10, 100, 1000, 10000)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a network by gradient descent and measure its NTK change",
        description="Train one network by full-batch gradient descent on the MSE loss over S "
        "samples of a data set and report the relative NTK change "
        "|Theta_t - Theta_0|_F / |Theta_0|_F at the snapshot steps and at the end "
        "(paper Section 4).",
    )
    add_init_args(p)
    add_shape_args(p)
    p.add_argument("--dataset", default="mnist", metavar="NAME",
                   help=f"training data: {', '.join(DATASET_NAMES)} (default mnist)")
    p.add_argument("--samples", type=INT, default=128, metavar="S",
                   help="training samples S (class-balanced; default 128)")
    p.add_argument("--target", default=None,
                   help="targets: parity (default for images: +1 even, -1 odd digit), "
                   "pair:A,B (+1 class A, -1 class B), sign (gaussian, its default)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="directory with the full idx files (default: $NTKSCOPE_DATA, the user "
                   "cache, system directories, else the subset shipped with ntkscope)")
    p.add_argument("--lr", type=FLOAT, default=None,
                   help="fixed learning rate (default 1e-5, the paper's)")
    p.add_argument("--lr-scale", type=FLOAT, default=None, metavar="S",
                   help="S * lr_max, lr_max = 2 S / lambda_max(Theta_0); with --lr: a cap, "
                   "lr = min(--lr, S * lr_max)")
    p.add_argument("--max-steps", type=INT, default=100_000, metavar="N",
                   help="most gradient steps (default 100000)")
    p.add_argument("--patience", type=INT, default=100, metavar="N",
                   help="early stopping: steps without improvement (default 100)")
    p.add_argument("--min-delta", type=FLOAT, default=1e-7, metavar="F",
                   help="early stopping: smallest decrease that counts (default 1e-7)")
    p.add_argument("--snapshots", default=",".join(map(str, DEFAULT_SNAPSHOTS)),
                   metavar="T1,T2,...",
                   help="steps at which the NTK change is measured (default 10,100,1000,10000)")
    p.add_argument("--seed", type=INT, default=0,
                   help="seed of the samples and of the network (default 0)")
    p.add_argument("--dtype", default="float64", choices=sorted(DTYPES),
                   help="floating-point type (default float64)")
    add_device_arg(p, "the training")
    p.add_argument("--threads", type=INT, default=1, metavar="N",
                   help="torch CPU threads (default 1: the per-layer products are small and "
                   "more threads mostly add synchronization stalls; try more for M >= 1024)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="write the loss curve (log scale) with the NTK changes marked")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_json_arg(p)
    p.set_defaults(func=run)


def parse_snapshots(text: str) -> tuple[int, ...]:
    """``"10,100,1000"`` -> ``(10, 100, 1000)``; ``""`` -> ``()``."""
    parts = [s.strip() for s in str(text).split(",")] if str(text).strip() else []
    values: list[int] = []
    for part in parts:
        try:
            values.append(int(part))
        except ValueError:
            raise NtkscopeInputError(
                f"snapshots: expected comma-separated step numbers, got {text!r}"
            ) from None
    from ntkscope.training import check_snapshots

    return check_snapshots(values)


def plot_training(result: TrainResult, path: Path, title: str) -> Path:
    """Loss curve (log y) with the snapshot steps marked and the NTK changes annotated; written
    atomically."""
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
    ax.set_title(f"{title}\n{result.stop_reason} after {result.steps} steps", fontsize=9)
    return save_figure(fig, path)


def run(args: argparse.Namespace) -> int:
    if args.lr is not None and args.lr <= 0:
        raise NtkscopeInputError(f"lr: must be > 0, got {args.lr:g}")
    if args.lr_scale is not None and args.lr_scale <= 0:
        raise NtkscopeInputError(f"lr-scale: must be > 0, got {args.lr_scale:g}")
    import torch

    from ntkscope.networks import MLP, check_device
    from ntkscope.training import train

    snapshots = parse_snapshots(args.snapshots)
    plot = None if args.plot is None else check_output_file(args.plot, "plot", (".png",))
    check_device(args.device)
    net = MLP(784, args.width, args.depth, args.activation, args.sigma_w2, args.sigma_b2)
    data = load_dataset(args.dataset, args.samples, args.seed, target=args.target,
                        data_dir=args.data_dir)
    run_ = train(
        net, data.X, data.y, batch=1, seed=args.seed, lr=args.lr, lr_scale=args.lr_scale,
        max_steps=args.max_steps, patience=args.patience, min_delta=args.min_delta,
        snapshots=snapshots, dtype=getattr(torch, args.dtype), device=args.device,
        progress=not args.quiet and args.max_steps >= 1000, threads=args.threads,
    )
    result = run_.results[0]
    title = (f"{net.activation.name}, sw2={net.sigma_w2:g}, sb2={net.sigma_b2:g}, "
             f"L={net.depth}, M={args.width}, {data.name} ({data.target}), S={args.samples}")
    if data.note:  # after every check passed: a failing command prints one line only
        print(f"ntkscope train: note: {data.note}", file=sys.stderr)
    if plot is not None:
        plot_training(result, plot, title)
    if args.json:
        print_json(result.to_dict())
        return 0
    rows: list[tuple[str, object]] = [
        ("learning rate", result.lr),
        ("lr_max = 2S/lambda_max", result.lr_max),
        ("steps", result.steps),
        ("stop reason", result.stop_reason),
        ("initial loss", result.initial_loss),
        ("final loss", result.final_loss),
        ("min loss", f"{result.min_loss:.10g} (step {result.min_loss_step})"),
    ]
    rows += [(f"NTK change, step {t}", v) for t, v in result.ntk_change.items()]
    rows.append((f"NTK change, final ({result.steps})", result.final_ntk_change))
    rows.append(("seconds", f"{result.seconds:.2f}"))
    if plot is not None:
        rows.append(("plot written to", str(plot)))
    print_table(rows, title=f"Gradient descent: {title}")
    return 0
