"""``ntkscope check``: is this network in the NTK regime?

Mean-field theory (phase, ``chi1``, ``sw2_EOC``, ``kappa1/kappa2``), the NTK's randomness at
initialization (``R`` with its 95% interval, low-rank sampler), its relative change during a
short gradient descent run at ``--lr-scale`` times ``lr_max``, whether the loss fell, and a
verdict ``ntk_regime``: yes / borderline / no with the reasons. ``--html`` writes a
self-contained report. Rules and thresholds: :mod:`ntkscope.check` and ``docs/check.md``.
"""

from __future__ import annotations

import argparse
import sys

from ntkscope.cli.common import (
    FLOAT,
    INT,
    add_device_arg,
    add_init_args,
    add_json_arg,
    add_shape_args,
    fmt,
    print_json,
)
from ntkscope.datasets import DATASET_NAMES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="is this network in the NTK regime? theory, NTK randomness, NTK change, verdict",
        description="Checks both statements of NTK theory for one network: the NTK is nearly "
        "deterministic at initialization (R = E[Theta0^2]/E[Theta0]^2 with a 95% bootstrap "
        "interval, exact low-rank sampler) and stays nearly constant in training (relative "
        "change |Theta_t - Theta_0|_F/|Theta_0|_F after a short full-batch gradient descent "
        "run), next to the mean-field phase, chi1, the EOC and kappa1/kappa2, and gives the "
        "verdict ntk_regime: yes, borderline or no, with the reasons (docs/check.md).",
    )
    add_init_args(p)
    add_shape_args(p)
    p.add_argument("--dataset", default="mnist", metavar="|".join(DATASET_NAMES),
                   help="training data (default mnist; parity targets)")
    p.add_argument("--samples", type=INT, default=128, metavar="S",
                   help="training samples S (default 128)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="directory with the full idx files (default: the usual places, else "
                   "the subset shipped with ntkscope)")
    p.add_argument("--inits", type=INT, default=1000, metavar="N",
                   help="initializations for R (default 1000)")
    p.add_argument("--train-steps", type=INT, default=200, metavar="N",
                   help="most gradient descent steps of the run (default 200)")
    p.add_argument("--lr-scale", type=FLOAT, default=0.5, metavar="F",
                   help="learning rate F * lr_max, lr_max = 2S/lambda_max(Theta_0) "
                   "(default 0.5)")
    p.add_argument("--seed", type=INT, default=0,
                   help="seed of the samples, the initializations and the network (default 0)")
    p.add_argument("--threads", type=INT, default=1, metavar="N",
                   help="torch CPU threads for the training run (default 1: fastest on a "
                   "small or loaded machine)")
    add_device_arg(p, "the sampling and the training run")
    p.add_argument("--html", metavar="FILE",
                   help="also write a self-contained HTML report (missing directories are created)")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ntkscope.check import check_network, kappa_cut, theory_condition
    from ntkscope.defaults import MIN_ESS
    from ntkscope.io import check_output_file
    from ntkscope.report import write_report
    from ntkscope.statistics import format_ess

    target = None if args.html is None else check_output_file(args.html, "html")
    res = check_network(
        args.activation, args.sigma_w2, args.sigma_b2, args.depth, args.width,
        dataset=args.dataset, samples=args.samples, inits=args.inits,
        train_steps=args.train_steps, lr_scale=args.lr_scale, seed=args.seed,
        data_dir=args.data_dir, threads=args.threads, device=args.device,
        curve=target is not None,
    )
    if res.data_note:
        print(f"ntkscope check: note: {res.data_note}", file=sys.stderr)
    if target is not None:
        write_report(res, target)
    if args.json:
        print_json(res.to_dict())
        return 0
    e, v, t, tr = res.evidence, res.verdict, res.thresholds, res.training
    rows: list[tuple[str, str, str]] = [
        ("phase", e.phase, "chi1 < 1 ordered, > 1 chaotic"),
        ("chi1", fmt(e.chi1), "1"),
        ("sigma_w2_eoc", fmt(e.sigma_w2_eoc), f"sigma_w2 = {e.sigma_w2:g}"),
        ("kappa1/kappa2", fmt(e.kappa_ratio),
         f"nearly degenerate below {kappa_cut(e.samples, t):.5g} "
         f"(condition ~{theory_condition(e.kappa_ratio, e.samples):.3g})"),
        ("R = E[Theta0^2]/E[Theta0]^2",
         fmt(e.ratio) if e.ratio_ci is not None else f"R >= {e.ratio:.6g}",
         f"pass if CI <= {t.ratio_deterministic:g}, fail if >= {t.ratio_random:g}: "
         f"{v.criteria['randomness']}"),
        ("95% CI of R", "none: R is a lower bound (heavy tail)" if e.ratio_ci is None
         else f"[{e.ratio_ci[0]:.6g}, {e.ratio_ci[1]:.6g}]", ""),
        ("ESS of Theta0^2 weights", format_ess(res.variance.ess, res.variance.inits),
         f"R is a lower bound below {MIN_ESS:g}"),
    ]
    if e.hanin_nica is not None:
        rows.append(("Hanin & Nica exp(5L/M)", fmt(e.hanin_nica), "ReLU (2, 0) law"))
    rows += [
        (f"NTK change ({tr.steps} steps)", fmt(e.ntk_change),
         f"pass if <= {t.change_small:g}, fail if >= {t.change_large:g}: "
         f"{v.criteria['change']}"),
        ("min loss / initial loss", fmt(e.loss_drop), ""),
        ("min loss / constant loss", fmt(e.unexplained),
         f"trainable if <= {t.unexplained_trainable:g}: {'yes' if v.trainable else 'no'}"),
        ("ntk_regime", v.ntk_regime, ""),
        ("seconds", f"{res.seconds['total']:.1f}", ""),
    ]
    width = max(len(k) for k, _, _ in rows)
    vwidth = max(len(x) for _, x, _ in rows)
    print(f"ntkscope check: {e.activation}, sw2={e.sigma_w2:g}, sb2={e.sigma_b2:g}, "
          f"L={e.depth}, M={e.width}, {res.dataset}, S={e.samples}, inits={res.variance.inits}, "
          f"lr={e.lr_scale:g} lr_max")
    for key, value, threshold in rows:
        line = f"  {key:<{width}}  {value:<{vwidth}}  {threshold}"
        print(line.rstrip())
    print("reasons:")
    for reason in v.reasons:
        print(f"  - {reason}")
    if target is not None:
        print(f"report written to {target}")
    return 0
