"""Is my CNN in the NTK regime? ``ntkscope.NTKTracker`` in an ordinary training loop.

A small CNN is trained on MNIST digits with SGD and cross-entropy, minibatch by minibatch, as
any training script does; three lines add the tracker, which measures the empirical NTK on a
fixed probe batch every ``--every`` steps and records how far the kernel and the weights have
moved from initialization (``docs/tracker.md``). At the end it writes the history as CSV and
a plot::

    python examples/tracker_cnn_mnist.py                  # ~1 minute on 2 cores
    python examples/tracker_cnn_mnist.py --steps 2000 --width 64 --data-dir ~/mnist
    python examples/tracker_cnn_mnist.py --store runs.sqlite --run cnn-a   # resumable

With ``--store``, the snapshots go into an ntkscope results store as they are taken and a
checkpoint of the model is saved at each one; run the same command again after a kill and it
continues from the last snapshot, with the changes still measured against step 0.

Without ``--data-dir`` (the full idx files) it uses the 2,000-image MNIST subset shipped with
ntkscope, so it runs from a clean clone. A lazy (NTK-regime) network shows ``ntk_change`` and
``weight_change`` far below 1 through training; a feature-learning one does not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from ntkscope.datasets import load_dataset
from ntkscope.generic import NTKTracker


def cnn(width: int = 16) -> nn.Sequential:
    """Two 3x3 convolutions with ReLU and average pooling, then a linear classifier."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(width * 7 * 7, 10),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    p.add_argument("--every", type=int, default=50, help="snapshot interval (default 50)")
    p.add_argument("--batch", type=int, default=64, help="minibatch size (default 64)")
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default 0.05)")
    p.add_argument("--width", type=int, default=16, help="CNN channels (default 16)")
    p.add_argument("--probe", type=int, default=64, help="probe inputs (default 64)")
    p.add_argument("--samples", type=int, default=2000, help="training images (default 2000)")
    p.add_argument("--data-dir", default=None, help="directory with the MNIST idx files")
    p.add_argument("--out", default="tracker-out", help="output directory (default tracker-out)")
    p.add_argument("--store", default=None, help="keep the snapshots in this SQLite store")
    p.add_argument("--run", default="cnn-mnist", help="run name in the store")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> NTKTracker:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    # --- data: MNIST images (N, 1, 28, 28) and their digits ------------------------------
    data = load_dataset("mnist", args.samples, seed=args.seed, data_dir=args.data_dir)
    if data.note:
        print(data.note, file=sys.stderr)
    images = torch.as_tensor(data.X, dtype=torch.float32).reshape(-1, 1, 28, 28)
    digits = torch.as_tensor(data.labels, dtype=torch.int64)
    probe_x, probe_y = images[:args.probe], digits[:args.probe]

    # --- the user's model, optimizer and loop ---------------------------------------------
    model = cnn(args.width)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(args.seed)
    out = Path(args.out)
    checkpoint = out / f"{args.run}.pt"
    start = None
    if args.store and checkpoint.exists():  # resume: the model of the last snapshot
        state = torch.load(checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        start = state["step"]
        print(f"resuming {args.run!r} at step {start}")
    tracker = NTKTracker(model, probe_x, probe_y, every=args.every,  # step 0: Theta_0
                         store=args.store, run=args.run if args.store else None, step=start)
    while tracker.counter < args.steps:
        idx = torch.randint(len(images), (args.batch,), generator=generator)
        optimizer.zero_grad()
        loss = loss_fn(model(images[idx]), digits[idx])
        loss.backward()
        optimizer.step()
        record = tracker.step()  # a snapshot every `every` steps
        if record is not None:
            print(f"step {record.step:5d}  loss {loss.item():.3f}  "
                  f"ntk_change {record.ntk_change:.3f}  kernel_distance "
                  f"{record.kernel_distance:.4f}  alignment {record.alignment:.3f}  "
                  f"weight_change {record.weight_change:.3f}  ({record.seconds:.2f} s)")
            if args.store:
                out.mkdir(parents=True, exist_ok=True)
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "generator": generator.get_state(), "step": record.step},
                           checkpoint)

    csv_path = tracker.to_csv(out / "tracker.csv")
    png_path = tracker.plot(out / "tracker.png")
    print(f"wrote {csv_path} and {png_path}")
    tracker.close()
    return tracker


if __name__ == "__main__":
    main()
