"""``ntkscope ntk``: the empirical NTK of one randomly initialized network on ``S`` inputs.

``Theta0(X) = sum_{l=1}^{L+1} (D_l D_l^T) o (A_{l-1} A_{l-1}^T + 1)`` (CONVENTIONS section 3) of
the network number 0 of ``--seed``, on ``S`` inputs of a data set (``q0 = 1``). Prints its size,
trace, extreme eigenvalues and condition number; ``--out`` saves the kernel (``.npy``),
``--save-params`` the weights ``W1..W{L+1}`` (``M_l x M_{l-1}``), biases ``b1..b{L+1}`` and the
inputs ``X`` (``.npz``), both written atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np

from ntkscope.cli import common
from ntkscope.datasets import load_dataset
from ntkscope.io import atomic_open, check_output_file
from ntkscope.kernel_summary import kernel_summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ntk",
        help="empirical NTK of one random network on S inputs (trace, eigenvalues, saving)",
        description="Compute the empirical NTK Theta0(X) of one randomly initialized network "
        "on S inputs and print its size, trace, extreme eigenvalues and condition number.",
    )
    common.add_network_args(p)
    common.add_data_args(p, "gaussian", samples=None,
                  what="input data set (gaussian: uniform on the sphere |x|^2 = M0; images: "
                  "class-balanced, each scaled to |x|^2 = 784)")
    p.add_argument("--input-dim", type=common.INT, default=784, metavar="M0",
                   help="input dimension M0 (default 784)")
    common.add_seed_arg(p, "the inputs and of the network")
    p.add_argument("--out", metavar="FILE.npy", help="save the S x S kernel (.npy)")
    p.add_argument("--save-params", metavar="FILE.npz",
                   help="save W1..W{L+1}, b1..b{L+1} and X (.npz)")
    common.add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch  # imported only when the command runs (fast start for the other commands)

    from ntkscope.ntk import empirical_ntk

    t0 = time.perf_counter()
    out = None if args.out is None else check_output_file(args.out, "out", (".npy",))
    params_out = (None if args.save_params is None
                  else check_output_file(args.save_params, "save-params", (".npz",)))
    spec = common.network_spec(args, args.input_dim)
    net = spec.mlp()
    data = load_dataset(args.dataset, args.samples, args.seed, data_dir=args.data_dir,
                        dim=args.input_dim)
    X = data.X
    params = net.init(batch=1, seed=args.seed, dtype=torch.float64)
    K = empirical_ntk(net, params, X)[0].cpu().numpy()
    if out is not None:
        with atomic_open(out, "wb") as fh:
            np.save(fh, K)
    if params_out is not None:
        with atomic_open(params_out, "wb") as fh:
            np.savez(fh, X=X, **params.to_numpy_dict(0))
    summary = kernel_summary(
        K, heading=f"Empirical NTK: {spec.describe()}, {args.dataset} inputs",
        out=None if out is None else str(out),
        params=None if params_out is None else str(params_out))
    summary = dataclasses.replace(summary, seconds=time.perf_counter() - t0)
    if data.note:  # after every check passed: a failing command prints one line only
        print(f"ntkscope ntk: note: {data.note}", file=sys.stderr)
    common.print_result(summary, args.json)
    return 0
