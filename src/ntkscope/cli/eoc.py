"""``ntkscope eoc``: the edge-of-chaos weight variance for a bias variance."""

from __future__ import annotations

import argparse

import numpy as np

from ntkscope.cli.common import add_init_args, add_json_arg, print_json, print_table
from ntkscope.theory import eoc
from ntkscope.validation import NtkscopeInputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eoc",
        help="edge of chaos: sw2 with chi1(q*) = 1 for the given sb2",
        description="Solves chi1(q*) = 1 for sw2 at fixed sb2 (CONVENTIONS 5). ReLU: sw2 = 2 "
        "for every sb2 (q* does not exist / is not unique: reported as null).",
    )
    add_init_args(p, need_sw2=False)
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sw2, q_star = eoc(args.activation, args.sigma_b2)
    if np.isnan(sw2):
        raise NtkscopeInputError(
            f"activation: no edge of chaos found for {args.activation} at sb2={args.sigma_b2:g}"
        )
    res = {"sigma_w2": float(sw2), "q_star": None if np.isnan(q_star) else float(q_star)}
    if args.json:
        print_json(res)
    else:
        print_table(list(res.items()),
                    title=f"ntkscope eoc: {args.activation}, sb2={args.sigma_b2:g}")
    return 0
