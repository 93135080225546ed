"""Overhead of :class:`ntkscope.NTKTracker` in a training loop (issue 13: at most 10%).

Run ``.venv/bin/python bench/bench_tracker.py [--steps 500] [--every 100] [--probe 128]
[--batch 128] [--repeats 1] [--threads 2] [--data-dir DIR] [--store]``.

The benchmark CNN ``ntkscope.generic.zoo.mnist_cnn()`` (430,890 parameters, float32) is
trained on MNIST (``ntkscope.datasets.load_dataset("mnist", ...)``, images reshaped to
``(N, 1, 28, 28)``; the full idx files from ``--data-dir``, else the shipped subset) with SGD
(learning rate 0.05, cross-entropy, minibatches of ``--batch`` drawn from a seeded
permutation), ``--steps`` steps, without and with a tracker taking snapshots every
``--every`` steps on ``--probe`` fixed training images (construction = the snapshot of step 0
included in the timed run). Both variants start from the same initialization and see the same
batches; they alternate in one process (off, on, on, off, ...), so machine load drifts hit
both alike. Printed: each run's time, the ratio of the median times (target <= 1.10), the
mean time of a training step and of a snapshot, the ratio those predict, and the overhead
inside each tracked run (its time over its time outside the snapshots), which load drifting
between runs does not bias (on a shared machine the runs' times can drift by 30%).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from ntkscope.datasets import load_dataset
from ntkscope.generic import NTKTracker, zoo

TARGET = 1.10
LR = 0.05


def load(samples: int, data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``(images (N, 1, 28, 28) float32, labels (N,) int64, source)``; the shipped subset
    (2,000 images) when the full files are not found."""
    try:
        data = load_dataset("mnist", samples, seed=0, data_dir=data_dir)
    except ValueError:
        if data_dir is not None:
            raise
        data = load_dataset("mnist", 2000, seed=0)
    x = torch.as_tensor(data.X, dtype=torch.float32).reshape(-1, 1, 28, 28)
    return x, torch.as_tensor(data.labels, dtype=torch.int64), data.source


def train(x: torch.Tensor, labels: torch.Tensor, steps: int, batch: int,
          every: int | None, probe: int, store: Path | None, run: str) -> dict[str, float]:
    """One timed run; ``every=None``: no tracker."""
    torch.manual_seed(0)
    model = zoo.mnist_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    tracker = None
    if every is not None:
        tracker = NTKTracker(model, x[:probe], labels[:probe], every=every, store=store,
                             run=run if store is not None else None)
    at = 0
    for _ in range(steps):
        if at + batch > len(x):
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(at))
            at = 0
        idx = order[at:at + batch]
        at += batch
        opt.zero_grad()
        loss = loss_fn(model(x[idx]), labels[idx])
        loss.backward()
        opt.step()
        if tracker is not None:
            tracker.step()
    seconds = time.perf_counter() - start
    out = {"seconds": seconds, "loss": float(loss.detach())}
    if tracker is not None:
        snaps = [r.seconds for r in tracker.history]
        out.update(snapshots=len(snaps), snapshot_seconds=sum(snaps),
                   ntk_change=tracker.history[-1].ntk_change)
        tracker.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--probe", type=int, default=128)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--samples", type=int, default=10000, help="training images (full files)")
    p.add_argument("--repeats", type=int, default=1, help="pairs of runs (off, on)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--store", action="store_true", help="the tracker writes to a store")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, labels, source = load(args.samples, args.data_dir)
    print(f"MNIST CNN, {len(x)} images ({source}), SGD lr={LR}, batch {args.batch}, "
          f"{args.steps} steps, float32, {args.threads} threads; tracker every {args.every} "
          f"steps on {args.probe} probe inputs{' with a store' if args.store else ''}")
    off: list[float] = []
    on: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for mode in (("off", "on") if rep % 2 == 0 else ("on", "off")):
                store = Path(tmp) / "bench.sqlite" if args.store else None
                r = train(x, labels, args.steps, args.batch,
                          args.every if mode == "on" else None, args.probe, store,
                          run=f"bench-{rep}")
                (on.append(r) if mode == "on" else off.append(r["seconds"]))
                extra = (f", {r['snapshots']:.0f} snapshots {r['snapshot_seconds']:.2f} s, "
                         f"ntk_change {r['ntk_change']:.3g}") if mode == "on" else ""
                print(f"  run {rep} tracker {mode:3s}: {r['seconds']:.2f} s "
                      f"(loss {r['loss']:.3f}{extra})", flush=True)
    t_off = statistics.median(off)
    t_on = statistics.median(r["seconds"] for r in on)
    step = t_off / args.steps
    snap = statistics.mean(r["snapshot_seconds"] / r["snapshots"] for r in on)
    n_snap = on[0]["snapshots"]
    predicted = 1 + n_snap * snap / t_off
    inside = statistics.median(r["seconds"] / (r["seconds"] - r["snapshot_seconds"])
                               for r in on)
    ratio = t_on / t_off
    print(f"training step {step * 1000:.1f} ms; snapshot {snap:.2f} s "
          f"({snap / step:.1f} steps); {n_snap:.0f} snapshots per run")
    print(f"ratio with/without tracker: {ratio:.3f} (predicted from the parts {predicted:.3f}; "
          f"target <= {TARGET}): {'pass' if ratio <= TARGET else 'FAIL'}")
    print(f"inside the tracked runs (run time / its time outside snapshots): {inside:.3f} "
          f"(robust to load drifting between runs): {'pass' if inside <= TARGET else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
