"""``ntkscope theory``: mean-field quantities and the expected NTK of one initialization."""

from __future__ import annotations

import argparse

import numpy as np

from ntkscope.cli.common import FLOAT, INT, add_init_args, add_json_arg, fmt, print_json
from ntkscope.theory import chi1_fixed_point, phase_of, propagate
from ntkscope.validation import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "theory",
        help="mean-field recursions, expected NTK and kappa1/kappa2 (infinite width)",
        description="Per-layer q, q_sr, c, p, p_sr, chi1 (paper Section 2, CONVENTIONS 4), the "
        "output NNGP variance/covariance, the expected NTK E Theta(x,x), E Theta(x,x') at the "
        "given widths, kappa1, kappa2 (Lemma 5.2), the fixed point q* and the phase.",
    )
    add_init_args(p)
    p.add_argument("--depth", type=INT, required=True, metavar="L", help="hidden layers L")
    p.add_argument("--width", type=INT, default=100, metavar="M", help="hidden width (100)")
    p.add_argument("--input-dim", type=INT, default=None, metavar="M0",
                   help="input dimension M0 (default: the width)")
    p.add_argument("--q0", type=FLOAT, default=1.0, help="|x|^2 / M0 of both inputs (1)")
    p.add_argument("--c0", type=FLOAT, default=0.0,
                   help="input covariance x.x'/M0, |c0| <= q0 (0); correlation is c0/q0")
    add_json_arg(p)
    p.set_defaults(func=run)


def compute(args: argparse.Namespace) -> dict:
    """The ``theory`` result as the JSON contract's dict."""
    depth = positive_int("depth", args.depth)
    width = positive_int("width", args.width)
    mf = propagate(args.activation, args.sigma_w2, args.sigma_b2, depth, width,
                   args.input_dim, q0=args.q0, c0=args.c0)
    chi, q_star = chi1_fixed_point(args.activation, args.sigma_w2, args.sigma_b2)
    return {
        "activation": mf.activation,
        "sigma_w2": args.sigma_w2,
        "sigma_b2": args.sigma_b2,
        "depth": depth,
        "width": width,
        "input_dim": mf.input_dim,
        "q0": args.q0,
        "c0": args.c0,
        "layers": mf.layer_table(),
        "ntk_mean_diag": float(mf.ntk_mean_diag),
        "ntk_mean_offdiag": float(mf.ntk_mean_offdiag),
        "kappa1": float(mf.kappa1),
        "kappa2": float(mf.kappa2),
        "kappa_ratio": float(mf.kappa_ratio),
        "output_var": float(mf.output_var),
        "output_cov": float(mf.output_cov),
        "chi1_fixed_point": None if np.isnan(chi) else float(chi),  # no q*: null
        "q_star": None if np.isnan(q_star) else float(q_star),
        "phase": str(phase_of(chi)),
    }


def run(args: argparse.Namespace) -> int:
    res = compute(args)
    if args.json:
        print_json(res)
        return 0
    print(f"ntkscope theory: {res['activation']}, sw2={fmt(res['sigma_w2'])}, "
          f"sb2={fmt(res['sigma_b2'])}, L={res['depth']}, M={res['width']}, "
          f"M0={res['input_dim']}, q0={fmt(res['q0'])}, c0={fmt(res['c0'])}")
    cols = ("l", "q", "q_sr", "c", "p", "p_sr", "chi1")
    print("  " + "".join(f"{c:>14}" for c in cols))
    for row in res["layers"]:
        print("  " + "".join(f"{row[c]:>14.6g}" if c != "l" else f"{row[c]:>14d}" for c in cols))
    for key in ("output_var", "output_cov", "ntk_mean_diag", "ntk_mean_offdiag", "kappa1",
                "kappa2", "kappa_ratio", "chi1_fixed_point", "q_star", "phase"):
        print(f"  {key:<18} {fmt(res[key])}")
    return 0
