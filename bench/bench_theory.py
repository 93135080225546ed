"""Benchmark: vectorised mean-field theory on a 200 x 200 (sw2, sb2) grid at depth 100.

Baseline (same run): the same quantities computed point by point (a Python loop of scalar
`propagate` calls on a sample of grid points, scaled to the full grid). Prints seconds and
the speed-up ratio; the numbers go into bench/RESULTS.md.

    .venv/bin/python bench/bench_theory.py
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the issue asks

import numpy as np

from ntkscope.theory import eoc_curve, propagate


def best_of(fn, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    n, depth = 200, 100
    sw2 = np.linspace(0.5, 4.0, n)[:, None]
    sb2 = np.linspace(0.0, 2.0, n)[None, :]
    print(f"grid {n}x{n} of (sw2, sb2), depth {depth}, c0 = 0.5, one core")
    for act in ("relu", "erf"):
        t_grid = best_of(
            lambda act=act: propagate(act, sw2, sb2, depth, c0=0.5, keep_layers=False)
        )
        pts = 200
        idx = np.random.default_rng(0).integers(0, n, size=(pts, 2))
        t0 = time.perf_counter()
        for i, j in idx:
            propagate(act, float(sw2[i, 0]), float(sb2[0, j]), depth, c0=0.5, keep_layers=False)
        t_loop = (time.perf_counter() - t0) / pts * n * n
        print(f"  {act:5s} vectorised {t_grid:7.3f} s   pointwise loop (scaled) {t_loop:7.1f} s"
              f"   speed-up {t_loop / t_grid:6.0f}x   target < 1 s: "
              f"{'PASS' if t_grid < 1 else 'FAIL'}")
    grid = np.linspace(0.0, 2.0, 200)
    t_eoc = best_of(lambda: eoc_curve("tanh", grid), repeats=1)
    print(f"  tanh EOC curve over 200 values of sb2 (quadrature): {t_eoc:.2f} s")


if __name__ == "__main__":
    main()
