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
from typing import Any

from ntkscope.cli import common
from ntkscope.defaults import CHECK_LOSS_FRACTION as LOSS_FRACTION
from ntkscope.defaults import CHECK_MODEL_INITS as MODEL_INITS
from ntkscope.defaults import CHECK_PROBES as PROBES
from ntkscope.defaults import CHECK_STEPS as STEPS
from ntkscope.defaults import INITS
from ntkscope.validation import NtkscopeInputError


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
    common.add_network_args(p, required=False)
    common.add_data_args(p, "mnist", samples=128, files=True,
                         what="training data (parity targets; FILE.npz with --model: "
                         "docs/check.md)")
    p.add_argument("--inits", type=common.INT, default=None, metavar="N",
                   help=f"initializations for R (default {INITS}; with --model "
                   f"{MODEL_INITS})")
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
    p.add_argument("--lr-scale", type=common.FLOAT, default=None, metavar="F",
                   help="learning rate F * lr_max, lr_max = 2S/lambda_max(Theta_0) "
                   "(default 0.5)")
    common.add_seed_arg(p, "the samples, the initializations and the network")
    p.add_argument("--threads", type=common.INT, default=1, metavar="N",
                   help="torch CPU threads for the training run (default 1: fastest on a "
                   "small or loaded machine)")
    common.add_device_arg(p, "the sampling and the training run")
    g = p.add_argument_group(
        "any PyTorch model",
        "--model replaces the network flags: R on the first --probes samples, the NTK change "
        "of full-batch gradient descent with --loss, and, for a factory taking width=, the "
        "change at a second width. Inputs are flat (S, 784) when the model's first layer "
        "with parameters is nn.Linear, else images (S, 1, 28, 28); --input-shape overrides.")
    g.add_argument("--model", metavar="FILE.py:FACTORY",
                   help="a function returning the nn.Module (FILE.py:FACTORY or "
                   "package.module:factory); initialization i of seed s is "
                   "torch.manual_seed(s + i); factory()")
    g.add_argument("--loss", default=None, metavar="mse|cross-entropy",
                   help="the training loss (default mse; targets: docs/check.md)")
    g.add_argument("--lr", type=common.FLOAT, default=None, metavar="F",
                   help="a fixed learning rate (with --lr-scale: the smaller of the two)")
    g.add_argument("--probes", type=common.INT, default=None, metavar="N",
                   help=f"samples R is measured on (default {PROBES})")
    g.add_argument("--input-shape", metavar="C,H,W",
                   help="shape of one input (the 784 values of a sample, or a file's rows)")
    g.add_argument("--model-width", type=common.INT, default=None, metavar="W",
                   help="width= passed to a factory that takes it (default: its default)")
    p.add_argument("--html", metavar="FILE",
                   help="also write a self-contained HTML report (missing directories are created)")
    common.add_json_arg(p)
    p.set_defaults(func=run)


MODEL_ONLY = ("loss", "lr", "probes", "input_shape", "model_width")


def run(args: argparse.Namespace) -> int:
    from ntkscope.io import check_output_file
    from ntkscope.report import write_report

    target = None if args.html is None else check_output_file(args.html, "html")
    flags = ("steps", "loss_fraction", "second_width", "lr_scale", "lr", "loss", "probes",
             "input_shape", "samples", "inits", "width")
    if args.model is not None:
        given = [f"--{n.replace('_', '-')}" for n in common.NETWORK_FLAGS
                 if getattr(args, n) is not None]
        if given:
            raise NtkscopeInputError(f"{', '.join(given)}: the network flags describe the "
                                     "built-in MLP; --model replaces them")
        if args.device != "cpu":
            raise NtkscopeInputError("--device: a model runs where its factory puts it")
        from ntkscope.model_check import check_model

        with common.name_flags(*flags):
            res: Any = check_model(
                args.model, dataset=args.dataset, samples=args.samples,
                inits=MODEL_INITS if args.inits is None else args.inits,
                probes=PROBES if args.probes is None else args.probes,
                loss="mse" if args.loss is None else args.loss, lr=args.lr,
                lr_scale=args.lr_scale, steps=args.steps, loss_fraction=args.loss_fraction,
                width=args.model_width, width2=args.second_width,
                input_shape=args.input_shape, seed=args.seed, data_dir=args.data_dir,
                quiet=args.json,
            )
    else:
        from ntkscope.check import check_network

        given = [f"--{n.replace('_', '-')}" for n in MODEL_ONLY if getattr(args, n) is not None]
        if given:
            raise NtkscopeInputError(f"{', '.join(given)}: only with --model")
        with common.name_flags(*flags):
            res = check_network(
                common.network_spec(args), dataset=args.dataset, samples=args.samples,
                inits=INITS if args.inits is None else args.inits, steps=args.steps,
                loss_fraction=args.loss_fraction, width2=args.second_width,
                lr_scale=0.5 if args.lr_scale is None else args.lr_scale, seed=args.seed,
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
