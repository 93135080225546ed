"""``ntkscope kernel``: a tiled NTK into a zarr store (resumable, local or Dask); ``kernel
info`` and ``kernel reduce`` read a store tile by tile (``docs/kernel.md``)."""

from __future__ import annotations

import argparse
import sys

from ntkscope.cli import common
from ntkscope.validation import NtkscopeInputError

_DEFAULT_SAMPLES = 1000
_DEFAULT_TILE = 512  # ntkscope.tiled._compute.TILE (not imported: torch loads lazily)
_COMPUTE = ("model", "out")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kernel", help="a tiled NTK of any model into a zarr store (resumable, local or Dask)",
        description="K_ij = sum_a <df_a(x1_i)/dtheta, df_a(x2_j)/dtheta>, the trace NTK of the "
        "model of --seed (torch.manual_seed(seed); factory(), in eval mode, --dtype), cut into "
        "tiles of --tile samples (upper triangle when X2 = X1), each a task that builds the "
        "model, checks its weights' fingerprint against the store's and writes its own zarr "
        "chunk. A rerun with the same arguments computes only the missing tiles (also after a "
        "kill); a store holding another kernel is refused. `ntkscope kernel info K.zarr` shows "
        "what is done, `ntkscope kernel reduce K.zarr` the trace, Frobenius norm, top "
        "eigenvalues and |K - K2|_F / |K|_F, read tile by tile.")
    p.add_argument("--model", metavar="FILE.py:FACTORY",
                   help="a function of no arguments returning the nn.Module (FILE.py:FACTORY "
                   "or package.module:factory; workers import it)")
    common.add_data_args(p, "mnist", samples=_DEFAULT_SAMPLES, files=True,
                         what="the inputs (X1: the first --samples of the selection)")
    p.add_argument("--x2-samples", type=common.INT, metavar="N2",
                   help="X2 = the next N2 samples of the data set after X1 (default: X2 = X1, "
                   "the symmetric kernel)")
    p.add_argument("--input-dim", type=common.INT, metavar="M0",
                   help="input dimension of --dataset gaussian")
    p.add_argument("--input-shape", metavar="C,H,W",
                   help="shape of one input: the values of a sample reshaped to it")
    p.add_argument("--output", default="trace", metavar="trace|diagonal",
                   help="trace (default: N x N2, summed over outputs) or diagonal "
                   "(K(x_i, x_i) only)")
    p.add_argument("--tile", type=common.INT, default=_DEFAULT_TILE, metavar="T",
                   help=f"tile side in samples, one zarr chunk per tile (default {_DEFAULT_TILE})")
    p.add_argument("--out", metavar="K.zarr",
                   help="the store: a directory (shared with the workers) or an fsspec URL")
    p.add_argument("--executor", default="local", metavar="local|dask",
                   help="local worker processes (default; --workers 1: this process) or Dask")
    p.add_argument("--workers", type=common.INT, metavar="N",
                   help="local worker processes (default 1: this process), or the workers of "
                   "a local Dask cluster (default: all cores)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="an existing Dask scheduler (with --executor dask)")
    p.add_argument("--dtype", default="float64", metavar="float32|float64",
                   help="of the model, the inputs and the stored kernel (default float64)")
    common.add_device_arg(p, "the tiles are computed")
    common.add_seed_arg(p, "the model (torch.manual_seed) and the data selection")
    p.add_argument("--data-seed", type=common.INT, metavar="S",
                   help="seed of the data selection when it differs from --seed (kernels of "
                   "two models on the same inputs)")
    p.add_argument("--retries", type=common.INT, default=2, metavar="R",
                   help="further tries of a failing tile before it is reported (default 2)")
    p.add_argument("--max-memory", metavar="BYTES",
                   help="per-tile memory budget of module_ntk, e.g. 8GiB (default: half the "
                   "free memory of the device)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    common.add_json_arg(p)
    p.set_defaults(func=_compute)

    actions = p.add_subparsers(dest="action", metavar="info|reduce")
    q = actions.add_parser("info", help="what a kernel store holds and how much is done",
                           description="The store's attributes (model, weights fingerprint, "
                           "data selection, seed, output, dtype, tile, version) and its tiles "
                           "done out of all; --verify re-reads every done tile against its "
                           "checksum.")
    q.add_argument("store", metavar="K.zarr")
    q.add_argument("--verify", action="store_true",
                   help="re-read every finished tile and check its checksum")
    common.add_json_arg(q)
    q.set_defaults(func=_info)

    q = actions.add_parser("reduce", help="trace, Frobenius norm, top eigenvalues and the "
                           "change metric of a stored kernel, tile by tile",
                           description="Reductions read tile by tile, never loading the "
                           "kernel: the trace, |K|_F, the top-k eigenvalues (randomized "
                           "subspace iteration, one read of the kernel per pass, with error "
                           "bounds) and |K - K2|_F / |K|_F against another stored kernel of "
                           "the same inputs.")
    q.add_argument("store", metavar="K.zarr")
    q.add_argument("--top-eigenvalues", type=common.INT, default=0, metavar="K",
                   help="the K largest eigenvalues (default 0: none)")
    q.add_argument("--compare", metavar="K2.zarr",
                   help="another stored kernel: |K - K2|_F / |K|_F")
    q.add_argument("--tol", type=common.FLOAT, default=None, metavar="T",
                   help="eigenvalues: stop when every residual is below T * lambda_1 "
                   "(default 1e-10)")
    common.add_json_arg(q)
    q.set_defaults(func=_reduce)


def _compute(args: argparse.Namespace) -> int:
    from ntkscope.tiled import KernelConfig, KernelTilesFailed, kernel_matrix

    missing = [f"--{n}" for n in _COMPUTE if getattr(args, n) is None]
    if missing:
        raise NtkscopeInputError(f"the following arguments are required: {', '.join(missing)} "
                                 "(or `ntkscope kernel info|reduce K.zarr`)")
    flags = ("samples", "x2_samples", "output", "tile", "executor", "workers", "scheduler",
             "dtype", "device", "seed", "data_seed", "retries", "max_memory", "input_dim",
             "input_shape")
    with common.name_flags(*flags, "out", "model", "dataset"):
        config = KernelConfig(
            args.model, args.out, dataset=args.dataset, samples=args.samples,
            x2_samples=args.x2_samples, output=args.output, tile=args.tile,
            executor=args.executor, workers=args.workers, scheduler=args.scheduler,
            dtype=args.dtype, device=args.device, seed=args.seed, data_seed=args.data_seed,
            retries=args.retries,
            max_memory=args.max_memory, data_dir=args.data_dir, input_dim=args.input_dim,
            input_shape=args.input_shape, quiet=args.quiet or not sys.stderr.isatty())
        try:
            result = kernel_matrix(config=config)
        except KernelTilesFailed as exc:
            common.print_result(exc.result, args.json)
            print(f"ntkscope kernel: error: {exc}", file=sys.stderr)
            return 1
    common.print_result(result, args.json)
    return 0


def _info(args: argparse.Namespace) -> int:
    from ntkscope.tiled import kernel_info, open_kernel

    result = kernel_info(args.store)
    extra = []
    if args.verify:
        bad = open_kernel(args.store).verify()
        extra.append(("checksums", "all match" if not bad else
                      f"{len(bad)} of {result.tiles_done} done tiles differ: {bad[:8]}"))
        if bad and not args.json:
            common.print_result(result, False, extra)
            return 1
    common.print_result(result, args.json, extra)
    return 0


def _reduce(args: argparse.Namespace) -> int:
    from ntkscope.tiled import reduce_kernel
    from ntkscope.tiled._reduce import EIG_TOL

    with common.name_flags("top_eigenvalues", "tol", "compare"):
        result = reduce_kernel(args.store, top_eigenvalues=args.top_eigenvalues,
                               compare=args.compare,
                               tol=EIG_TOL if args.tol is None else args.tol)
    common.print_result(result, args.json)
    return 0
