"""``ntkscope eoc``: the edge-of-chaos weight variance for a bias variance."""

from __future__ import annotations

import argparse

from ntkscope.cli.common import add_init_args, add_json_arg, print_result
from ntkscope.theory.summary import edge_of_chaos


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
    print_result(edge_of_chaos(args.activation, args.sigma_b2), args.json)
    return 0
