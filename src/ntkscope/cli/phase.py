"""``ntkscope phase`` and the shared phase summary of one initialization."""

from __future__ import annotations

import argparse

import numpy as np

from ntkscope.cli.common import add_init_args, add_json_arg, print_json, print_table
from ntkscope.theory import chi1_fixed_point, eoc, phase_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "phase",
        help="chi1 at the fixed point q* and the phase (ordered / edge of chaos / chaotic)",
        description="chi1 = sw2 E[phi'(sqrt(q*) z)^2] at the stable fixed point q* of the "
        "variance map; ordered if chi1 < 1, chaotic if chi1 > 1 (CONVENTIONS 5).",
    )
    add_init_args(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    chi, q_star = chi1_fixed_point(args.activation, args.sigma_w2, args.sigma_b2)
    sw2_eoc, _ = eoc(args.activation, args.sigma_b2)
    res = {
        "chi1": None if np.isnan(chi) else float(chi),  # no q*: null, like q_star
        "q_star": None if np.isnan(q_star) else float(q_star),
        "phase": str(phase_of(chi)),
        "sigma_w2_eoc": None if np.isnan(sw2_eoc) else float(sw2_eoc),
    }
    if args.json:
        print_json(res)
    else:
        print_table(list(res.items()), title=f"ntkscope phase: {args.activation}, "
                    f"sw2={args.sigma_w2:g}, sb2={args.sigma_b2:g}")
    return 0
