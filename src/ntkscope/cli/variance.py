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

from ntkscope.cli.common import (
    INT,
    add_device_arg,
    add_init_args,
    add_json_arg,
    add_shape_args,
    print_json,
    print_table,
)
from ntkscope.datasets import DATASET_NAMES
from ntkscope.generalization import IllConditionedWarning, variance_report


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
    add_init_args(p)
    add_shape_args(p)
    p.add_argument("--samples", type=INT, default=32, metavar="S",
                   help="training set size S (default 32)")
    p.add_argument("--test-points", type=INT, default=16, metavar="T",
                   help="held-out inputs (test split) the variance is averaged over (default 16)")
    p.add_argument("--dataset", default="gaussian", metavar="|".join(DATASET_NAMES),
                   help="input data set (default gaussian: uniform on the sphere |x|^2 = M0)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="directory with the full idx files (default: the usual places, else "
                   "the subset shipped with ntkscope)")
    p.add_argument("--input-dim", type=INT, default=None, metavar="M0",
                   help="input dimension of the gaussian data set (default 784)")
    p.add_argument("--monte-carlo", type=INT, default=None, metavar="N",
                   help="also estimate the variance from N >= 2 initializations")
    p.add_argument("--training-sets", type=INT, default=1, metavar="G",
                   help="random training sets for Monte Carlo (N initializations each; "
                   "default 1)")
    p.add_argument("--seed", type=INT, default=0, help="seed of data and networks (default 0)")
    add_device_arg(p, "the Monte Carlo sampling")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IllConditionedWarning)
        rep = variance_report(
            args.activation, args.sigma_w2, args.sigma_b2, args.depth, args.width,
            args.samples, dataset=args.dataset, test_points=args.test_points,
            monte_carlo=args.monte_carlo, training_sets=args.training_sets, seed=args.seed,
            input_dim=args.input_dim, data_dir=args.data_dir, device=args.device,
        )
    for w in caught:
        print(f"ntkscope variance: warning: {w.message}", file=sys.stderr)
    if args.json:
        print_json(rep.to_dict())
        return 0
    th, mc = rep.theorem, rep.mc
    rows: list[tuple[str, object]] = [
        ("Theorem 5.3 variance", th.variance),
        ("A = S/(k1/k2 + S - 1)", th.A),
        ("kappa1/kappa2 (data mean)", th.kappa_ratio),
        ("qbar = q^{L+1}", th.qbar),
        ("qbar_sr = q^{L+1}_sr (mean)", th.qbar_sr),
        ("theorem, E Theta ratio", th.variance_ntk_ratio),
        ("kernel variance (E Theta)", rep.kernel.variance),
        ("cond E Theta0(X)", rep.kernel.condition_number),
    ]
    if mc is not None:
        rows += [
            ("Monte Carlo variance", mc.variance),
            (f"{mc.confidence:.0%} bootstrap CI", f"[{mc.ci[0]:.6g}, {mc.ci[1]:.6g}]"),
            ("cond Theta0(X) (median)", mc.median_condition_number),
            ("inits x training sets", f"{mc.inits} x {mc.training_sets}"),
        ]
    print_table(
        rows,
        title=f"Output variance after training (NTK theory, eq. 10): {th_name(args)}, "
        f"S={rep.samples}, {rep.test_points} held-out {rep.dataset} inputs (M0={rep.input_dim})",
    )
    return 0


def th_name(args: argparse.Namespace) -> str:
    return (f"{args.activation}, sw2={args.sigma_w2:g}, sb2={args.sigma_b2:g}, L={args.depth}, "
            f"M={args.width}")
