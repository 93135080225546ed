"""``ntkscope ntk-variance``: how random is the NTK at initialization? (paper Section 3)

Estimates ``R = E[Theta0(x,x)^2] / E[Theta0(x,x)]^2`` over independent initializations for an
input with ``q0 = 1``, with a 95% bootstrap interval and the tail diagnostic (the effective
sample size of the ``Theta0^2`` weights; below :data:`ntkscope.defaults.MIN_ESS` ``R`` is shown
as a lower bound ``R >= x``), next to the mean-field ``E Theta0(x,x)`` (and, for ReLU, Hanin &
Nica's ``exp(5 L/M)``). See :func:`ntkscope.sampling.ntk_variance`.
"""

from __future__ import annotations

import argparse
import sys

from ntkscope.cli import common
from ntkscope.defaults import INITS, INPUT_DIM, MAX_INITS, MIN_ESS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ntk-variance",
        help="NTK randomness at initialization: E[Theta0^2]/E[Theta0]^2 with a bootstrap CI",
        description="Sample Theta0(x, x) over independent initializations (input with q0 = 1) "
        "and report R = E[Theta0(x,x)^2] / E[Theta0(x,x)]^2 with a 95% bootstrap interval, "
        "the effective sample size ESS = (sum t^2)^2 / sum t^4 of the draws t = Theta0(x,x) "
        f"(below {MIN_ESS:g} the heavy tail is undersampled and R is reported as a lower bound "
        "R >= x, without an interval), the sample mean and std, the mean-field E Theta0(x,x) "
        "and, for ReLU, Hanin & Nica's exp(5 L/M). The default low-rank sampler is exact and "
        "O(M) per layer.",
    )
    common.add_network_args(p)
    p.add_argument("--input-dim", type=common.INT, default=INPUT_DIM, metavar="M0",
                   help=f"input dimension M0 (default {INPUT_DIM})")
    p.add_argument("--inits", type=common.INT, default=INITS, metavar="N",
                   help=f"independent initializations (default {INITS}; with --target-ess the "
                   "first batch)")
    p.add_argument("--target-ess", type=common.FLOAT, metavar="E",
                   help="keep drawing initializations until the ESS reaches E (or --max-inits "
                   "draws); the draws equal those of one run with the final --inits")
    p.add_argument("--max-inits", type=common.INT, metavar="N",
                   help=f"budget of --target-ess (default {MAX_INITS:,})")
    common.add_seed_arg(p, "the initializations and the bootstrap")
    p.add_argument("--method", default="lowrank", metavar="lowrank|dense",
                   help="exact low-rank sampler (default) or dense weights + empirical NTK")
    common.add_device_arg(p, "the sampling")
    common.add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ntkscope.sampling import ntk_variance  # torch: imported only when the command runs

    res = ntk_variance(
        common.network_spec(args, args.input_dim),
        inits=args.inits,
        seed=args.seed,
        method=args.method,
        device=args.device,
        progress=sys.stderr.isatty(),
        target_ess=args.target_ess,
        max_inits=args.max_inits,
    )
    common.print_result(res, args.json)
    return 0
