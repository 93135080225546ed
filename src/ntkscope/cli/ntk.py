"""``ntkscope ntk``: the empirical NTK of one randomly initialized network on ``S`` inputs.

``Theta0(X) = sum_{l=1}^{L+1} (D_l D_l^T) o (A_{l-1} A_{l-1}^T + 1)`` (CONVENTIONS section 3) of
the network number 0 of ``--seed``, on ``S`` inputs of a data set (``q0 = 1``). Prints its size,
trace, extreme eigenvalues and condition number; ``--out`` saves the kernel (``.npy``),
``--save-params`` the weights ``W1..W{L+1}`` (``M_l x M_{l-1}``), biases ``b1..b{L+1}`` and the
inputs ``X`` (``.npz``), both written atomically.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from ntkscope.cli.common import (
    INT,
    add_init_args,
    add_json_arg,
    add_shape_args,
    print_json,
    print_table,
)
from ntkscope.datasets import DATASET_NAMES, load_dataset
from ntkscope.io import atomic_open, check_output_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ntk",
        help="empirical NTK of one random network on S inputs (trace, eigenvalues, saving)",
        description="Compute the empirical NTK Theta0(X) of one randomly initialized network "
        "on S inputs and print its size, trace, extreme eigenvalues and condition number.",
    )
    add_init_args(p)
    add_shape_args(p)
    p.add_argument("--samples", type=INT, required=True, metavar="S", help="number of inputs S")
    p.add_argument("--dataset", default="gaussian", metavar="NAME",
                   help=f"input data set: {', '.join(DATASET_NAMES)} (default gaussian: uniform "
                   "on the sphere |x|^2 = M0; images: class-balanced, each scaled to "
                   "|x|^2 = 784)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="directory with the full idx files of the image data set (default: "
                   "$NTKSCOPE_DATA, the user cache, system directories, else the subset "
                   "shipped with ntkscope)")
    p.add_argument("--input-dim", type=INT, default=784, metavar="M0",
                   help="input dimension M0 (default 784)")
    p.add_argument("--seed", type=INT, default=0,
                   help="seed of the inputs and of the network (default 0)")
    p.add_argument("--out", metavar="FILE.npy", help="save the S x S kernel (.npy)")
    p.add_argument("--save-params", metavar="FILE.npz",
                   help="save W1..W{L+1}, b1..b{L+1} and X (.npz)")
    add_json_arg(p)
    p.set_defaults(func=run)


def kernel_summary(K: np.ndarray) -> dict[str, float | int | None]:
    """Size, trace, extreme eigenvalues and ``lambda_max / lambda_min`` of a symmetric kernel.

    The condition number is ``None`` when ``lambda_min <= 0`` (singular to working precision).
    """
    eig = np.linalg.eigvalsh(K)
    lo, hi = float(eig[0]), float(eig[-1])
    return {
        "size": int(K.shape[0]),
        "trace": float(np.trace(K)),
        "eig_min": lo,
        "eig_max": hi,
        "condition_number": hi / lo if lo > 0 else None,
    }


def run(args: argparse.Namespace) -> int:
    import torch  # imported only when the command runs (fast start for the other commands)

    from ntkscope.networks import MLP
    from ntkscope.ntk import empirical_ntk

    t0 = time.perf_counter()
    out = None if args.out is None else check_output_file(args.out, "out", (".npy",))
    params_out = (None if args.save_params is None
                  else check_output_file(args.save_params, "save-params", (".npz",)))
    net = MLP(args.input_dim, args.width, args.depth, args.activation, args.sigma_w2,
              args.sigma_b2)
    data = load_dataset(args.dataset, args.samples, args.seed, data_dir=args.data_dir,
                        dim=args.input_dim)
    X = data.X
    params = net.init(batch=1, seed=args.seed, dtype=torch.float64)
    K = empirical_ntk(net, params, X)[0].cpu().numpy()
    summary = kernel_summary(K)
    if out is not None:
        with atomic_open(out, "wb") as fh:
            np.save(fh, K)
    if params_out is not None:
        with atomic_open(params_out, "wb") as fh:
            np.savez(fh, X=X, **params.to_numpy_dict(0))
    summary["seconds"] = time.perf_counter() - t0
    if data.note:  # after every check passed: a failing command prints one line only
        print(f"ntkscope ntk: note: {data.note}", file=sys.stderr)
    if args.json:
        print_json({**summary, "out": None if out is None else str(out),
                    "params": None if params_out is None else str(params_out)})
        return 0
    cond = summary["condition_number"]
    rows = [
        ("size", f"{summary['size']} x {summary['size']}"),
        ("trace", summary["trace"]),
        ("lambda_min", summary["eig_min"]),
        ("lambda_max", summary["eig_max"]),
        ("condition number", "inf (lambda_min <= 0)" if cond is None else cond),
    ]
    if out is not None:
        rows.append(("kernel saved to", str(out)))
    if params_out is not None:
        rows.append(("parameters saved to", str(params_out)))
    print_table(
        rows,
        title=f"Empirical NTK: {net.activation.name}, sw2={net.sigma_w2:g}, "
        f"sb2={net.sigma_b2:g}, L={net.depth}, M={args.width}, {args.dataset} inputs",
    )
    return 0
