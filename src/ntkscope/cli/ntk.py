"""``ntkscope ntk``: the empirical NTK of one randomly initialized network on ``S`` inputs.

``Theta0(X) = sum_{l=1}^{L+1} (D_l D_l^T) o (A_{l-1} A_{l-1}^T + 1)`` (CONVENTIONS section 3) of
the network number 0 of ``--seed``, on ``S`` inputs of a data set (``q0 = 1``). Prints its size,
trace, extreme eigenvalues and condition number; ``--out`` saves the kernel (``.npy``),
``--save-params`` the weights ``W1..W{L+1}`` (``M_l x M_{l-1}``), biases ``b1..b{L+1}`` and the
inputs ``X`` (``.npz``), both written atomically.

With ``--model FILE.py:FACTORY`` (or ``package.module:factory``) the network is any
``torch.nn.Module``: the model of seed ``s`` is ``torch.manual_seed(s); factory()``
(CONVENTIONS section 9), used as it is (its dtype, device, mode), and its trace kernel
``Theta_ij = sum_o <df_o(x_i)/dtheta, df_o(x_j)/dtheta>`` comes from
:func:`ntkscope.module_ntk`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any

import numpy as np

from ntkscope.cli.common import (
    INT,
    NETWORK_FLAGS,
    add_data_args,
    add_json_arg,
    add_network_args,
    add_seed_arg,
    name_flags,
    network_spec,
    print_result,
)
from ntkscope.datasets import load_dataset
from ntkscope.defaults import INPUT_DIM
from ntkscope.io import atomic_open, check_output_file
from ntkscope.kernel_summary import diagonal_summary, kernel_summary
from ntkscope.validation import NtkscopeInputError

OUTPUTS = ("trace", "diagonal", "full")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ntk",
        help="empirical NTK of one random network on S inputs (trace, eigenvalues, saving)",
        description="Compute the empirical NTK Theta0(X) of one randomly initialized network "
        "on S inputs and print its size, trace, extreme eigenvalues and condition number. "
        "The network is the MLP of the network flags, or any torch.nn.Module built by "
        "--model.",
    )
    add_network_args(p, required=False)
    add_data_args(p, "gaussian", samples=None,
                  what="input data set (gaussian: uniform on the sphere |x|^2 = M0; images: "
                  "class-balanced, each scaled to |x|^2 = 784)")
    p.add_argument("--input-dim", type=INT, default=None, metavar="M0",
                   help=f"input dimension M0 (default {INPUT_DIM})")
    add_seed_arg(p, "the inputs and of the network")
    p.add_argument("--output", default="trace", choices=OUTPUTS,
                   help="trace: the S x S kernel summed over the outputs (default); "
                   "diagonal: Theta(x_s, x_s) only (no S x S matrix); full: the S x S x O x O "
                   "kernel, saved with --out (its trace is summarized)")
    p.add_argument("--out", metavar="FILE.npy", help="save the kernel (.npy)")
    p.add_argument("--save-params", metavar="FILE.npz",
                   help="save W1..W{L+1}, b1..b{L+1} and X (.npz; the MLP only)")
    g = p.add_argument_group(
        "any PyTorch model",
        "--model replaces the network flags. The model is used as it is: nothing is called "
        "on it (no .eval(), no dtype or device change); the inputs take its dtype and device. "
        "A model whose outputs couple the samples of a batch (BatchNorm in training mode, "
        "dropout) is refused: return model.eval() from the factory. Inputs are flat (S, M0) "
        "when the model's first layer with parameters is nn.Linear, else images "
        "(S, 1, 28, 28); --input-shape overrides.")
    g.add_argument("--model", metavar="FILE.py:FACTORY",
                   help="a function of no arguments returning the nn.Module (FILE.py:FACTORY "
                   "or package.module:factory); the model of seed s is "
                   "torch.manual_seed(s); factory()")
    g.add_argument("--input-shape", metavar="C,H,W",
                   help="shape of one input: the M0 values of a sample reshaped to it "
                   "(e.g. 784 or 1,28,28)")
    g.add_argument("--method", default=None, metavar="auto|layerwise|jacobian|ntvp",
                   help="algorithm of ntkscope.module_ntk (default auto)")
    g.add_argument("--max-memory", default=None, metavar="BYTES",
                   help="memory budget of the kernel computation, bytes or e.g. 2GiB "
                   "(default: a safe share of the free memory)")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    full = args.output == "full"
    if full and args.out is None:
        raise NtkscopeInputError("--output full: give --out FILE.npy (the S x S x O x O "
                                 "kernel is saved, its trace summarized)")
    out = None if args.out is None else check_output_file(args.out, "out", (".npy",))
    if args.model is not None:
        return _run_model(args, out, t0)
    for flag in ("input_shape", "method", "max_memory"):
        if getattr(args, flag) is not None:
            raise NtkscopeInputError(f"--{flag.replace('_', '-')}: only with --model")
    return _run_mlp(args, out, t0)


def _run_mlp(args: argparse.Namespace, out: Any, t0: float) -> int:
    import torch  # imported only when the command runs (fast start for the other commands)

    from ntkscope.ntk import empirical_ntk

    params_out = (None if args.save_params is None
                  else check_output_file(args.save_params, "save-params", (".npz",)))
    network_spec(args, args.input_dim)  # the network flags first
    data = load_dataset(args.dataset, args.samples, args.seed, data_dir=args.data_dir,
                        dim=args.input_dim)  # None: the data set's own (gaussian: 784)
    spec = network_spec(args, data.X.shape[1])
    net = spec.mlp()
    X = data.X
    params = net.init(batch=1, seed=args.seed, dtype=torch.float64)
    K = empirical_ntk(net, params, X, diagonal=args.output == "diagonal")[0].cpu().numpy()
    saved = K[:, :, None, None] if args.output == "full" else K
    if out is not None:
        with atomic_open(out, "wb") as fh:
            np.save(fh, saved)
    if params_out is not None:
        with atomic_open(params_out, "wb") as fh:
            np.savez(fh, X=X, **params.to_numpy_dict(0))
    heading = f"Empirical NTK: {spec.describe()}, {args.dataset} inputs"
    where = {"out": None if out is None else str(out)}
    if args.output == "diagonal":
        summary: Any = diagonal_summary(K, heading=heading, **where)
    else:
        summary = kernel_summary(K, heading=heading,
                                 params=None if params_out is None else str(params_out),
                                 **where)
    summary = dataclasses.replace(summary, seconds=time.perf_counter() - t0)
    if data.note:  # after every check passed: a failing command prints one line only
        print(f"ntkscope ntk: note: {data.note}", file=sys.stderr)
    print_result(summary, args.json)
    return 0


def _run_model(args: argparse.Namespace, out: Any, t0: float) -> int:
    import torch

    from ntkscope.generic import init_model, load_factory, model_inputs, module_ntk

    given = [f"--{n.replace('_', '-')}" for n in NETWORK_FLAGS if getattr(args, n) is not None]
    if given:
        raise NtkscopeInputError(
            f"{', '.join(given)}: the network flags describe the built-in MLP; --model "
            "replaces them")
    if args.save_params is not None:
        raise NtkscopeInputError("--save-params: only for the built-in MLP (save your model's "
                                 "state_dict yourself)")
    factory = load_factory(args.model)
    model = init_model(factory, args.seed)
    with name_flags("input_shape"):
        data = model_inputs(model, args.dataset, args.samples, args.seed,
                            data_dir=args.data_dir, input_dim=args.input_dim,
                            input_shape=args.input_shape)
    X, shape, why, dtype = data.x, data.shape, data.layout, data.x.dtype
    kwargs: dict[str, Any] = {}
    if args.method is not None:
        kwargs["method"] = args.method
    if args.max_memory is not None:
        kwargs["max_memory"] = _memory(args.max_memory)
    K = module_ntk(model, X, output=args.output, **kwargs).detach()
    n_out = int(K.shape[-1]) if args.output == "full" else None
    if out is not None:
        with atomic_open(out, "wb") as fh:
            np.save(fh, K.cpu().numpy())
    if args.output == "full":
        K = K.diagonal(dim1=2, dim2=3).sum(-1)
    K_np = K.cpu().to(torch.float64).numpy()
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    extra: dict[str, Any] = {
        "model": args.model, "output": args.output, "method": args.method or "auto",
        "input_shape": [int(args.samples), *shape], "dtype": str(dtype).replace("torch.", ""),
        "parameters": n_params,
    }
    if n_out is not None:
        extra["outputs"] = n_out
    heading = (f"Empirical NTK ({args.output}): {args.model} (seed {args.seed}), "
               f"{args.dataset} inputs")
    where = {"heading": heading, "out": None if out is None else str(out), "extra": extra}
    summary: Any = (diagonal_summary(K_np, **where) if args.output == "diagonal"
                    else kernel_summary(K_np, **where))
    summary = dataclasses.replace(summary, seconds=time.perf_counter() - t0)
    if data.note:
        print(f"ntkscope ntk: note: {data.note}", file=sys.stderr)
    shape_text = " x ".join(str(v) for v in (args.samples, *shape))
    print_result(summary, args.json, extra=[
        ("inputs", f"{shape_text}, {extra['dtype']} ({why})"),
        ("trainable parameters", n_params),
        ("method", extra["method"]),
    ])
    return 0


def _memory(text: str) -> int | str:
    """``--max-memory`` as given: an integer number of bytes, or the text for the library
    (which parses and checks it)."""
    try:
        return int(text)
    except ValueError:
        return text
