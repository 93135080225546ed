"""``ntkscope ntk-variance``: how random is the NTK at initialization? (paper Section 3)

Estimates ``R = E[Theta0(x,x)^2] / E[Theta0(x,x)]^2`` over independent initializations for an
input with ``q0 = 1``, with a 95% bootstrap interval, next to the mean-field ``E Theta0(x,x)``
(and, for ReLU, Hanin & Nica's ``exp(5 L/M)``). See :func:`ntkscope.sampling.ntk_variance`.
"""

from __future__ import annotations

import argparse
import sys

from ntkscope.cli.common import (
    INT,
    add_device_arg,
    add_init_args,
    add_json_arg,
    add_shape_args,
    print_json,
    print_table,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ntk-variance",
        help="NTK randomness at initialization: E[Theta0^2]/E[Theta0]^2 with a bootstrap CI",
        description="Sample Theta0(x, x) over independent initializations (input with q0 = 1) "
        "and report R = E[Theta0(x,x)^2] / E[Theta0(x,x)]^2 with a 95% bootstrap interval, "
        "the sample mean and std, the mean-field E Theta0(x,x) and, for ReLU, Hanin & Nica's "
        "exp(5 L/M). The default low-rank sampler is exact and O(M) per layer.",
    )
    add_init_args(p)
    add_shape_args(p)
    p.add_argument("--input-dim", type=INT, default=784, metavar="M0",
                   help="input dimension M0 (default 784)")
    p.add_argument("--inits", type=INT, default=1000, metavar="N",
                   help="independent initializations (default 1000)")
    p.add_argument("--seed", type=INT, default=0, help="random seed (default 0)")
    p.add_argument("--method", default="lowrank", metavar="lowrank|dense",
                   help="exact low-rank sampler (default) or dense weights + empirical NTK")
    add_device_arg(p, "the sampling")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ntkscope.sampling import ntk_variance  # torch: imported only when the command runs

    res = ntk_variance(
        args.activation,
        args.sigma_w2,
        args.sigma_b2,
        args.depth,
        args.width,
        inits=args.inits,
        input_dim=args.input_dim,
        seed=args.seed,
        method=args.method,
        device=args.device,
        progress=sys.stderr.isatty(),
    )
    if args.json:
        print_json(res.to_dict())
        return 0
    lo, hi = res.ratio_ci
    rows = [
        ("R = E[Theta0^2]/E[Theta0]^2", res.ratio),
        (f"{res.confidence:.0%} bootstrap CI", f"[{lo:.6g}, {hi:.6g}]"),
        ("mean Theta0(x,x)", res.mean),
        ("std Theta0(x,x)", res.std),
        ("theory E Theta0(x,x)", res.theory_mean),
    ]
    if res.hanin_nica is not None:
        rows.append(("Hanin-Nica exp(5L/M)", res.hanin_nica))
    rows += [("inits", res.inits), ("method", res.method), ("seconds", round(res.seconds, 3))]
    print_table(
        rows,
        title=f"NTK variance at initialization: {res.activation}, sw2={res.sigma_w2:g}, "
        f"sb2={res.sigma_b2:g}, L={res.depth}, M={args.width}, M0={res.input_dim}",
    )
    return 0
