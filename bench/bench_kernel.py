"""Benchmark of tiled kernels into a zarr store (``ntkscope.kernel_matrix``).

Run ``.venv/bin/python bench/bench_kernel.py [--quick] [--samples 4000] [--tile 512]
[--data-dir DIR] [--gpu-speedup F]``. Measures, on the MNIST CNN of the ``module_ntk``
benchmark (``ntkscope.generic.zoo.mnist_cnn``, 430,890 parameters, float64, ``O = 10``):

1. tiles per second of the trace kernel with one local worker (this process, one torch
   thread), two local worker processes (one thread each) and a Dask ``LocalCluster`` of two
   single-threaded workers, on the same tiles (``--rate-samples`` samples, ``--rate-tile``
   tiles; every rate includes starting the workers, reported separately as the ratio to one
   worker);
2. the wall time of the ``--samples`` trace kernel (default 4,000, tiles of ``--tile``) on
   two local workers; with ``--project-only`` (or ``--quick``) a smaller kernel is timed and
   the full one projected from its per-tile cost (``tiles x seconds per tile``, tiles of the
   same size);
3. the projected time of the 50,000-sample CIFAR-10 ResNet-18 trace kernel on ``n`` GPUs:
   ResNet-18 (``zoo.resnet18``, eval mode, float32) off-diagonal tiles of ``t = 8, 16, 32``
   samples (``--quick``: 2, 4, 8) are timed here on the CPU (one thread), fitted by
   ``a + b t + c t^2`` (the ``2 t O`` backward passes and the ``t^2`` contraction of
   ``module_ntk``'s layer-wise method), extrapolated to tiles of 512, multiplied by the
   ``R (R + 1) / 2`` upper-triangle tiles (``R = ceil(50000 / 512) = 98``), divided by
   ``--gpu-speedup`` (an assumed GPU / one CPU thread throughput ratio: stated, not
   measured; with ``--device cuda`` tiles of ``t = 64, 128, 256`` are timed on the GPU
   instead and no ratio is assumed) and by ``n`` times the measured two-worker parallel
   efficiency (independent tiles, one per GPU). Printed next to the published 43 minutes
   on 4 A100s (aw31/empirical-ntks, single node, gather-everything).

``--quick``: small sizes (a minute or two) of the same steps.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
# worker processes (local and Dask) import this checkout's ntkscope too
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])

from ntkscope.generic import module_ntk, zoo  # noqa: E402
from ntkscope.tiled import kernel_matrix  # noqa: E402

CNN = "ntkscope.generic.zoo:mnist_cnn"
PUBLISHED_MIN, PUBLISHED_GPUS = 43.0, 4
CIFAR_N, CIFAR_TILE = 50_000, 512


def _timed_kernel(out: Path, samples: int, tile: int, executor: str, workers: int,
                  data_dir: str | None) -> tuple[float, int]:
    t0 = time.perf_counter()
    res = kernel_matrix(CNN, out=str(out), dataset="mnist", samples=samples, tile=tile,
                        executor=executor, workers=workers, data_dir=data_dir, quiet=True)
    wall = time.perf_counter() - t0
    assert res.complete and res.computed == res.tiles_total
    return wall, res.tiles_total


def rates(args: argparse.Namespace, tmp: Path) -> dict[str, tuple[float, float]]:
    """Tiles per second of each executor, net of its fixed cost (starting the workers, the
    data, the model, the store), measured as the wall time of a one-tile kernel run just
    before."""
    print(f"\n1. tiles per second: mnist_cnn trace kernel, {args.rate_samples} samples, tiles "
          f"of {args.rate_tile} (net: less the fixed cost, a one-tile run's wall time)")
    out: dict[str, tuple[float, float]] = {}
    threads = torch.get_num_threads()
    for name, executor, workers in (("1 local worker (this process, 1 thread)", "local", 1),
                                    ("2 local workers (1 thread each)", "local", 2),
                                    ("Dask LocalCluster, 2 workers", "dask", 2)):
        torch.set_num_threads(1)
        try:
            fixed, _ = _timed_kernel(tmp / f"fixed-{executor}-{workers}.zarr", 2, 2, executor,
                                     workers, args.data_dir)
            wall, tiles = _timed_kernel(tmp / f"rate-{executor}-{workers}.zarr",
                                        args.rate_samples, args.rate_tile, executor, workers,
                                        args.data_dir)
        finally:
            torch.set_num_threads(threads)
        net = tiles / max(wall - fixed, 1e-9)
        out[name] = (net, fixed)
        base = next(iter(out.values()))[0]
        print(f"   {name:42s} {tiles} tiles in {wall:6.2f} s (fixed cost {fixed:5.2f} s): "
              f"{tiles / wall:6.3f} tiles/s, net {net:6.3f} ({net / base:.2f}x of one worker)")
    return out


def big_kernel(args: argparse.Namespace, tmp: Path, fixed: float) -> float:
    """Seconds per tile of ``--tile`` on two local workers (and the full kernel's time); the
    projection counts the workers' fixed cost (step 1) once."""
    n, t = args.samples, args.tile
    rows = math.ceil(n / t)
    tiles_full = rows * (rows + 1) // 2
    measure = n if not args.project_only else min(n, 2 * t)
    print(f"\n2. the {n:,}-sample trace kernel (tiles of {t}: {tiles_full} upper-triangle "
          "tiles), 2 local workers")
    wall, tiles = _timed_kernel(tmp / "big.zarr", measure, t, "local", 2, args.data_dir)
    per_tile = max(wall - fixed, 1e-9) / tiles
    if measure == n:
        print(f"   measured: {wall:.1f} s ({wall / 60:.1f} min) for {tiles} tiles")
    else:
        print(f"   measured {measure} samples ({tiles} tiles of {t}) in {wall:.1f} s; "
              f"projected for {n:,}: {fixed:.1f} s + {tiles_full} x {per_tile:.2f} s = "
              f"{fixed + tiles_full * per_tile:.0f} s ({(fixed + tiles_full * per_tile) / 60:.1f} "
              "min; projection, not a measurement)")
    return per_tile


def resnet_tile_cost(sizes: tuple[int, ...], device: str) -> tuple[float, float, float]:
    """Fit ``a + b t + c t^2`` to ResNet-18 off-diagonal tile times (float32; on the CPU with
    one thread, or on ``device``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    where = "CPU 1 thread" if device == "cpu" else device

    def sync() -> None:
        if device != "cpu":
            torch.cuda.synchronize()

    try:
        torch.manual_seed(0)
        model = zoo.resnet18().eval().to(device)
        times = []
        for t in sizes:
            x1 = torch.randn(t, 3, 32, 32, device=device)
            x2 = torch.randn(t, 3, 32, 32, device=device)
            module_ntk(model, x1[:1], x2[:1])  # warm-up
            sync()
            t0 = time.perf_counter()
            module_ntk(model, x1, x2)
            sync()
            times.append(time.perf_counter() - t0)
            print(f"   ResNet-18 tile {t} x {t}, float32, {where}: {times[-1]:.2f} s")
    finally:
        torch.set_num_threads(threads)
    a_mat = torch.tensor([[1.0, t, t * t] for t in sizes], dtype=torch.float64)
    coef = torch.linalg.lstsq(a_mat, torch.tensor(times, dtype=torch.float64)[:, None]).solution
    a, b, c = (float(v) for v in coef[:, 0])
    return max(a, 0.0), max(b, 0.0), max(c, 0.0)


def projection(args: argparse.Namespace, efficiency: float) -> None:
    print(f"\n3. projection: CIFAR-10 ResNet-18 trace kernel, {CIFAR_N:,} samples, tiles of "
          f"{CIFAR_TILE}")
    cpu = args.device == "cpu"
    sizes = (2, 4, 8) if args.quick else (8, 16, 32) if cpu else (64, 128, 256)
    a, b, c = resnet_tile_cost(sizes, args.device)
    speedup = args.gpu_speedup if cpu else 1.0
    per_tile_cpu = a + b * CIFAR_TILE + c * CIFAR_TILE**2
    rows = math.ceil(CIFAR_N / CIFAR_TILE)
    tiles = rows * (rows + 1) // 2
    total_cpu = tiles * per_tile_cpu
    where = "one CPU thread" if cpu else args.device
    print(f"   fit: {a:.3g} + {b:.3g} t + {c:.3g} t^2 s per tile; t = {CIFAR_TILE}: "
          f"{per_tile_cpu:.1f} s on {where}; {tiles:,} tiles: {total_cpu / 3600:,.1f} "
          "hours there")
    if cpu:
        print(f"   assumed GPU / one CPU thread throughput: {speedup:g}x (not measured: no GPU; "
              "--device cuda measures it)")
    print(f"   parallel efficiency: {efficiency:.2f} measured (2 local workers on this "
          "machine's shared cores, net rates) and 1.0 (independent tiles, one GPU each)")
    for n in (1, 4, 8, 16, 64):
        ideal = total_cpu / speedup / n / 60
        note = f"   (published: {PUBLISHED_MIN:.0f} min on {PUBLISHED_GPUS} A100s)" \
            if n == PUBLISHED_GPUS else ""
        print(f"   {n:3d} GPUs: {ideal:8.1f} min at efficiency 1, {ideal / efficiency:8.1f} min "
              f"at {efficiency:.2f}{note}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a minute or two)")
    p.add_argument("--samples", type=int, default=4000, help="the big kernel (default 4000)")
    p.add_argument("--tile", type=int, default=512, help="its tiles (default 512)")
    p.add_argument("--project-only", action="store_true",
                   help="time two tile rows of the big kernel and project the rest")
    p.add_argument("--rate-samples", type=int, default=None)
    p.add_argument("--rate-tile", type=int, default=None)
    p.add_argument("--data-dir", default=None,
                   help="MNIST idx files (the shipped subset has 2,000 images)")
    p.add_argument("--gpu-speedup", type=float, default=200.0,
                   help="assumed GPU / one CPU thread throughput ratio (default 200: an A100's "
                   "19.5 TFLOPS float32 over ~0.1 TFLOPS of one AVX2 core)")
    p.add_argument("--device", default="cpu",
                   help="where the ResNet-18 tiles of step 3 are timed (cuda: no assumed "
                   "speedup)")
    args = p.parse_args()
    if args.quick:
        args.samples, args.tile, args.project_only = 256, 32, True
    args.rate_samples = args.rate_samples or (96 if args.quick else 512)
    args.rate_tile = args.rate_tile or (24 if args.quick else 128)
    if args.data_dir is None and args.samples > 2000 and not args.project_only:
        shared = Path("/work/shared/datasets/mnist")
        args.data_dir = str(shared) if shared.is_dir() else os.environ.get("NTKSCOPE_DATA")
    print(f"bench_kernel: torch {torch.__version__}, {os.cpu_count()} cores, "
          f"{'quick' if args.quick else 'full'}")
    with tempfile.TemporaryDirectory(prefix="bench-kernel-") as tmp:
        r = list(rates(args, Path(tmp)).values())
        efficiency = min(1.0, r[1][0] / r[0][0] / 2)
        big_kernel(args, Path(tmp), fixed=r[1][1])
    projection(args, efficiency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
