"""NTK randomness sampling benchmark (``ntkscope.sampling``).

Speed (default): ``Theta0(x, x)`` for 1000 initializations of a ReLU network with ``M = 500``,
``L = 50``, ``M0 = 784`` by the exact low-rank sampler, against the dense sampler
(``MLP.init`` + ``empirical_ntk``) timed in the same run on ``--dense-inits`` initializations
and scaled linearly to 1000 (its cost is linear in the number of initializations). Target:
low-rank at least 50x faster.

Hanin & Nica (``--hanin-nica``): ``R = E[Theta0(x,x)^2]/E[Theta0(x,x)]^2`` for ReLU with
``(sw2, sb2) = (2, 0)`` over a grid of ``(M, L)``, next to ``exp(5 L/M)``; the numbers of
``docs/ntk-variance.md``.

    .venv/bin/python bench/bench_sampling.py [--inits 1000] [--dense-inits 20]
    .venv/bin/python bench/bench_sampling.py --hanin-nica [--hn-inits 20000]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch

from ntkscope import NetworkSpec
from ntkscope.sampling import ntk_variance, sample_ntk


def speed(inits: int, dense_inits: int, width: int, depth: int, input_dim: int) -> dict:
    """Seconds for ``inits`` low-rank draws and (scaled) dense draws of ``Theta0(x, x)``.

    The dense sampler is timed with torch's default threads and with one thread; the faster
    of the two is the reference (on a loaded 2-core machine idle OpenMP workers can slow it).
    """
    x = np.ones((1, input_dim))
    args = (NetworkSpec("relu", 2.0, 0.0, depth, width), x)
    sample_ntk(*args, 4, method="lowrank", diagonal=True)  # warm-up
    t0 = time.perf_counter()
    low = sample_ntk(*args, inits, method="lowrank", diagonal=True)
    t_low = time.perf_counter() - t0
    dense_s = {}
    for threads in (torch.get_num_threads(), 1):
        t0 = time.perf_counter()
        dense = sample_ntk(*args, dense_inits, method="dense", diagonal=True, threads=threads)
        dense_s[threads] = time.perf_counter() - t0
    t_dense = min(dense_s.values())
    t_dense_scaled = t_dense * inits / dense_inits
    return {
        "lowrank_s": t_low,
        "dense_s": dense_s,
        "dense_scaled_s": t_dense_scaled,
        "ratio": t_dense_scaled / t_low,
        "lowrank_mean": float(low.theta.mean()),
        "dense_mean": float(dense.theta.mean()),
    }


# (M, depths): L/M = 0.1, 0.2, 0.3, 0.5, 1 for each width.
HN_GRID = ((50, (5, 10, 15, 25, 50)), (100, (10, 20, 30, 50, 100)), (200, (20, 40, 60, 100)))


def hanin_nica_table(inits: int, input_dim: int, seed: int) -> list[dict]:
    rows = []
    for width, depths in HN_GRID:
        for depth in depths:
            res = ntk_variance(NetworkSpec("relu", 2.0, 0.0, depth, width, input_dim),
                               inits=inits, seed=seed)
            beta = depth / width
            rows.append({
                "M": width, "L": depth, "L/M": beta, "R": res.ratio, "ci": res.ratio_ci,
                "text": res.ratio_text(),
                "exp5b": math.exp(5 * beta), "logR/5b": math.log(res.ratio) / (5 * beta),
                "mean/theory": res.mean / res.theory_mean, "s": res.seconds,
            })
            r = rows[-1]
            print(f"M={width:4d} L={depth:4d} L/M={beta:5.2f}  R={r['text']}  "
                  f"exp(5L/M)={r['exp5b']:9.4g}  "
                  f"log R/(5L/M)={r['logR/5b']:.3f}  mean/theory={r['mean/theory']:.3f}  "
                  f"({r['s']:.1f}s)", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inits", type=int, default=1000)
    p.add_argument("--dense-inits", type=int, default=20)
    p.add_argument("--width", type=int, default=500)
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--input-dim", type=int, default=784)
    p.add_argument("--hanin-nica", action="store_true")
    p.add_argument("--hn-inits", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    if a.hanin_nica:
        print(f"ReLU (sw2, sb2) = (2, 0), M0 = {a.input_dim}, {a.hn_inits} inits per cell")
        hanin_nica_table(a.hn_inits, a.input_dim, a.seed)
        return
    r = speed(a.inits, a.dense_inits, a.width, a.depth, a.input_dim)
    print(f"Theta0(x,x), ReLU sw2=2 sb2=0, M={a.width}, L={a.depth}, M0={a.input_dim}")
    print(f"  lowrank: {a.inits} inits in {r['lowrank_s']:.2f} s "
          f"({1e3 * r['lowrank_s'] / a.inits:.2f} ms/init)")
    for threads, sec in r["dense_s"].items():
        print(f"  dense:   {a.dense_inits} inits in {sec:.2f} s with {threads} thread(s) "
              f"({1e3 * sec / a.dense_inits:.1f} ms/init)")
    print(f"  dense (faster run) scaled linearly to {a.inits} inits: {r['dense_scaled_s']:.1f} s")
    print(f"  speed ratio dense/lowrank: {r['ratio']:.0f}x (target >= 50x)")
    print(f"  sample means: lowrank {r['lowrank_mean']:.6g}, dense {r['dense_mean']:.6g}")


if __name__ == "__main__":
    main()
