"""``ntkscope check``: is this network in the NTK regime?

Mean-field theory (phase, ``chi1``, ``sw2_EOC``, ``kappa1/kappa2``), the NTK's randomness at
initialization (``R`` with its 95% interval, low-rank sampler), its relative change during
gradient descent at ``--lr-scale`` times ``lr_max`` until the loss has fallen to
``--loss-fraction`` of its initial value (or ``--steps``), at the network's width and at a
second width, whether the loss fell, and a verdict ``ntk_regime``: yes / borderline / no with
the reasons. ``--model FILE.py:FACTORY`` checks any PyTorch model instead
(:mod:`ntkscope.model_check`). ``--html`` writes a self-contained report. Rules and
thresholds: :mod:`ntkscope.check` and ``docs/check.md``.
"""

from __future__ import annotations

import argparse
import sys

from ntkscope.cli import common
from ntkscope.defaults import CHECK_LOSS_FRACTION as LOSS_FRACTION
from ntkscope.defaults import CHECK_STEPS as STEPS
from ntkscope.defaults import INITS


def _fraction(text: str) -> float | None:
    return None if text.lower() == "none" else common.FLOAT(text)


def _width(text: str) -> int | str | None:
    low = text.lower()
    if low in ("auto", "none"):
        return None if low == "none" else "auto"
    return common.INT(text)


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
    common.add_network_args(p)
    common.add_data_args(p, "mnist", samples=128, what="training data (parity targets)")
    p.add_argument("--inits", type=common.INT, default=INITS, metavar="N",
                   help=f"initializations for R (default {INITS})")
    p.add_argument("--steps", "--train-steps", dest="steps", type=common.INT, default=STEPS,
                   metavar="N", help=f"most gradient descent steps of a run (default {STEPS}; "
                   "--train-steps is the older name)")
    p.add_argument("--loss-fraction", type=_fraction, default=LOSS_FRACTION, metavar="F",
                   help="a run stops when its loss has fallen to F times its initial loss; "
                   f"the NTK change is measured there (default {LOSS_FRACTION:g}; 'none': "
                   "the step budget alone)")
    p.add_argument("--second-width", type=_width, default="auto", metavar="N|auto|none",
                   help="width of the second run of the width comparison (default auto: 4M, "
                   "or M/4 where 4M would be slow; none: no comparison)")
    p.add_argument("--lr-scale", type=common.FLOAT, default=0.5, metavar="F",
                   help="learning rate F * lr_max, lr_max = 2S/lambda_max(Theta_0) "
                   "(default 0.5)")
    common.add_seed_arg(p, "the samples, the initializations and the network")
    p.add_argument("--threads", type=common.INT, default=1, metavar="N",
                   help="torch CPU threads for the training run (default 1: fastest on a "
                   "small or loaded machine)")
    common.add_device_arg(p, "the sampling and the training run")
    p.add_argument("--html", metavar="FILE",
                   help="also write a self-contained HTML report (missing directories are created)")
    common.add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ntkscope.check import check_network
    from ntkscope.io import check_output_file
    from ntkscope.report import write_report

    target = None if args.html is None else check_output_file(args.html, "html")
    with common.name_flags("steps", "loss_fraction", "second_width", "lr_scale"):
        res = check_network(
            common.network_spec(args), dataset=args.dataset, samples=args.samples,
            inits=args.inits, steps=args.steps, loss_fraction=args.loss_fraction,
            width2=args.second_width, lr_scale=args.lr_scale, seed=args.seed,
            data_dir=args.data_dir, threads=args.threads, device=args.device,
            curve=target is not None,
        )
    if res.data_note:
        print(f"ntkscope check: note: {res.data_note}", file=sys.stderr)
    if target is not None:
        write_report(res, target)
    common.print_result(res, args.json)
    if target is not None and not args.json:
        print(f"report written to {target}")
    return 0
