"""``ntkscope phase``: ``chi1`` at the fixed point ``q*`` and the phase of one initialization."""

from __future__ import annotations

import argparse

from ntkscope.cli.common import add_init_args, add_json_arg, print_result
from ntkscope.theory.summary import phase_summary


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
    print_result(phase_summary(args.activation, args.sigma_w2, args.sigma_b2), args.json)
    return 0
