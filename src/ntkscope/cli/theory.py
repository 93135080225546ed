"""``ntkscope theory``: mean-field quantities and the expected NTK of one initialization."""

from __future__ import annotations

import argparse

from ntkscope.cli import common
from ntkscope.theory.summary import theory_summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "theory",
        help="mean-field recursions, expected NTK and kappa1/kappa2 (infinite width)",
        description="Per-layer q, q_sr, c, p, p_sr, chi1 (paper Section 2, CONVENTIONS 4), the "
        "output NNGP variance/covariance, the expected NTK E Theta(x,x), E Theta(x,x') at the "
        "given widths, kappa1, kappa2 (Lemma 5.2), the fixed point q* and the phase.",
    )
    common.add_init_args(p)
    p.add_argument("--depth", type=common.INT, required=True, metavar="L", help="hidden layers L")
    p.add_argument("--width", type=common.INT, default=100, metavar="M", help="hidden width (100)")
    p.add_argument("--input-dim", type=common.INT, default=None, metavar="M0",
                   help="input dimension M0 (default: the width)")
    p.add_argument("--q0", type=common.FLOAT, default=1.0, help="|x|^2 / M0 of both inputs (1)")
    p.add_argument("--c0", type=common.FLOAT, default=0.0,
                   help="input covariance x.x'/M0, |c0| <= q0 (0); correlation is c0/q0")
    common.add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = theory_summary(args.activation, args.sigma_w2, args.sigma_b2, args.depth, args.width,
                         args.input_dim, q0=args.q0, c0=args.c0)
    common.print_result(res, args.json)
    return 0
