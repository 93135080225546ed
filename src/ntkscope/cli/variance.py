"""``ntkscope variance``: output variance of the fully trained linearized network (Section 5).

Theorem 5.3 ``Var f_inf(x) ~= (1 + A^2/S)(qbar - qbar_sr) + (A - 1)^2 qbar_sr`` with
``A = S / (kappa1/kappa2 + S - 1)`` from the mean-field theory, averaged over the data's input
covariances; with ``--monte-carlo N`` also eq. 10 evaluated on held-out inputs for ``N``
initializations of the exact low-rank sampler, with a 95% bootstrap interval. See
:func:`ntkscope.generalization.variance_report` and ``docs/generalization.md``.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from ntkscope.cli import common
from ntkscope.generalization import variance_report
from ntkscope.predict import IllConditionedWarning


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "variance",
        help="NTK-theory output variance after training (Theorem 5.3) vs Monte Carlo (eq. 10)",
        description="Theorem 5.3: Var f_inf(x) ~= (1 + A^2/S)(qbar - qbar_sr) + (A-1)^2 qbar_sr, "
        "A = S / (kappa1/kappa2 + S - 1), from mean-field theory averaged over the inputs' "
        "covariances; with --monte-carlo N, the variance of eq. 10 over N initializations on "
        "held-out inputs (95% bootstrap interval). condition_number is the median over the "
        "sampled Theta0(X) with --monte-carlo, else that of the expected NTK E Theta0(X).",
    )
    common.add_network_args(p)
    common.add_data_args(p, "gaussian", samples=32, what="input data set of the S training inputs "
                  "(gaussian: uniform on the sphere |x|^2 = M0)")
    p.add_argument("--test-points", type=common.INT, default=16, metavar="T",
                   help="held-out inputs (test split) the variance is averaged over (default 16)")
    p.add_argument("--input-dim", type=common.INT, default=None, metavar="M0",
                   help="input dimension of the gaussian data set (default 784)")
    p.add_argument("--monte-carlo", type=common.INT, default=None, metavar="N",
                   help="also estimate the variance from N >= 2 initializations")
    p.add_argument("--training-sets", type=common.INT, default=1, metavar="G",
                   help="random training sets for Monte Carlo (N initializations each; "
                   "default 1)")
    common.add_seed_arg(p, "data and networks")
    common.add_device_arg(p, "the Monte Carlo sampling")
    common.add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    net = common.network_spec(args, input_dim=args.input_dim)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IllConditionedWarning)
        rep = variance_report(
            net, args.samples, dataset=args.dataset, test_points=args.test_points,
            monte_carlo=args.monte_carlo, training_sets=args.training_sets, seed=args.seed,
            data_dir=args.data_dir, device=args.device,
        )
    for w in caught:
        print(f"ntkscope variance: warning: {w.message}", file=sys.stderr)
    common.print_result(rep, args.json)
    return 0
