"""``ntkscope ntk-variance``: how random is the NTK at initialization? (paper Section 3)

Estimates ``R = E[Theta0(x,x)^2] / E[Theta0(x,x)]^2`` over independent initializations for an
input with ``q0 = 1``, with a 95% bootstrap interval and the tail diagnostic (the effective
sample size of the ``Theta0^2`` weights; below :data:`ntkscope.defaults.MIN_ESS` ``R`` is shown
as a lower bound ``R >= x``), next to the mean-field ``E Theta0(x,x)`` (and, for ReLU, Hanin &
Nica's ``exp(5 L/M)``). See :func:`ntkscope.sampling.ntk_variance`.

With ``--model FILE.py:FACTORY`` (or ``package.module:factory``) the network is any
``torch.nn.Module``: initialization ``k`` is ``torch.manual_seed(seed + k); factory()``
(CONVENTIONS section 9), ``R`` is reported per input of ``--dataset`` (the worst one first,
:func:`ntkscope.generic.init_randomness`) with the kernel's relative standard deviation; the
initializations run as resumable sweep cells (``--store``, ``--executor``, ``--workers``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ntkscope.cli import common
from ntkscope.defaults import INITS, INPUT_DIM, MAX_INITS, MIN_ESS
from ntkscope.validation import NtkscopeInputError

#: ``--dataset`` and ``--samples`` with ``--model``.
MODEL_DATASET = "mnist"
MODEL_SAMPLES = 16
_MODEL_ONLY = ("dataset", "samples", "data_dir", "input_shape", "output", "store", "executor",
               "workers", "scheduler")


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
    common.add_network_args(p, required=False)
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
    g = p.add_argument_group(
        "any PyTorch model",
        "--model replaces the network flags: R = E[Theta0(x,x)^2]/E[Theta0(x,x)]^2 per input "
        "of --dataset (Theta0(x,x) the trace over outputs; the worst input is summarized), "
        "and the kernel's relative std |Theta0 - E Theta0|_F / |E Theta0|_F. Initialization "
        "k is torch.manual_seed(seed + k); factory(), in eval mode and float64. Inputs are "
        "flat (S, M0) when the model's first layer with parameters is nn.Linear, else images "
        "(S, 1, 28, 28); --input-shape overrides.")
    g.add_argument("--model", metavar="FILE.py:FACTORY",
                   help="a function of no arguments returning the nn.Module (FILE.py:FACTORY "
                   "or package.module:factory)")
    common.add_data_args(g, MODEL_DATASET, samples=MODEL_SAMPLES, files=True,
                         what="inputs with --model (gaussian: uniform on the sphere |x|^2 = "
                         "M0; images: class-balanced, |x|^2 = 784; FILE.npz: its array X, "
                         "first S rows, and y)")
    g.add_argument("--input-shape", metavar="C,H,W",
                   help="shape of one input: the M0 values of a sample reshaped to it")
    g.add_argument("--output", default=None, metavar="trace|diagonal|full",
                   help="kernel of the mean and the relative std: trace (default; S x S summed "
                   "over outputs), diagonal (Theta(x_s,x_s) only) or full (S x S x O x O)")
    g.add_argument("--store", metavar="PATH",
                   help="results store (SQLite) keeping finished chunks of initializations: a "
                   "rerun computes only the missing ones (default: none, a temporary store)")
    g.add_argument("--executor", default=None, metavar="local|dask|inline",
                   help="local worker processes (default; small jobs run in this process), "
                   "Dask tasks, or this process")
    g.add_argument("--workers", type=common.INT, default=None, metavar="N",
                   help="worker processes (default: all cores)")
    g.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="existing Dask scheduler (with --executor dask)")
    common.add_json_arg(p)
    p.set_defaults(func=run, dataset=None, samples=None)


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def run(args: argparse.Namespace) -> int:
    if args.model is not None:
        return _run_model(args)
    given = [_flag(n) for n in _MODEL_ONLY if getattr(args, n) is not None]
    if given:
        raise NtkscopeInputError(f"{', '.join(given)}: only with --model")
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


def _run_model(args: argparse.Namespace) -> int:
    import torch

    from ntkscope.generic import init_model, init_randomness, load_factory, model_inputs

    given = [_flag(n) for n in common.NETWORK_FLAGS if getattr(args, n) is not None]
    given += [_flag(n) for n in ("target_ess", "max_inits") if getattr(args, n) is not None]
    if args.method != "lowrank":
        given.append("--method")
    if given:
        raise NtkscopeInputError(
            f"{', '.join(given)}: options of the built-in MLP; --model replaces them")
    factory = load_factory(args.model)
    model = init_model(factory, args.seed)  # initialization 0: its inputs' dtype and shape
    data = model_inputs(model, args.dataset or MODEL_DATASET, args.samples or MODEL_SAMPLES,
                        args.seed, data_dir=args.data_dir,
                        input_dim=None if args.input_dim == INPUT_DIM else args.input_dim,
                        input_shape=args.input_shape)
    data = dataclasses.replace(data, x=data.x.to(torch.float64))  # as the kernels are computed
    res = init_randomness(
        factory, data.x, inits=args.inits, seed=args.seed, output=args.output or "trace",
        executor=args.executor or "local", workers=args.workers, scheduler=args.scheduler,
        store=args.store, device=None if args.device == "cpu" else args.device,
        quiet=not sys.stderr.isatty())
    if data.note:
        print(f"ntkscope ntk-variance: note: {data.note}", file=sys.stderr)
    res = dataclasses.replace(res, inputs=data.describe())
    common.print_result(res, args.json)
    return 0
