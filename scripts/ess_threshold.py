"""The experiment behind ``ntkscope.defaults.MIN_ESS`` (docs/ntk-variance.md, "Heavy tails").

ReLU ``(sw2, sb2) = (2, 0)``, ``M = 10``, ``M0 = 784``, ``x = (1, ..., 1)``; depths
``L = 1, 2, 5, 10, 20`` (``L/M = 0.1 ... 2``). For each depth the exact low-rank sampler draws a
pool of ``--pool`` initializations (seed 0, one torch thread); the pool is cut into disjoint
replicates of ``N = 100, 1e3, 1e4, 1e5`` draws. Per replicate: the sample ``R``, the tail
diagnostic ``ESS = (sum t^2)^2 / sum t^4`` and the 95% BCa interval (2000 resamples, as
``ntk_variance``). The reference for a replicate is ``R`` of the rest of the pool (leave the
replicate out). Printed: one row per ``(L, N)`` and the coverage binned by the replicate's ESS.

    .venv/bin/python scripts/ess_threshold.py            # about 3 minutes on one core
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ntkscope import NetworkSpec
from ntkscope.defaults import MIN_ESS
from ntkscope.sampling import sample_ntk
from ntkscope.statistics import ratio_bootstrap_ci, tail_ess

M = 10
DEPTHS = (1, 2, 5, 10, 20)
# Replicate size -> most replicates used (bootstrap cost ~ replicates x N x 2000).
REPLICATES = {100: 500, 1_000: 200, 10_000: 50, 100_000: 10}
ESS_BINS = (1, 10, 30, 100, 300, 1000, 10_000, np.inf)


def _pool(depth: int, pool: int) -> np.ndarray:
    """``Theta0(x, x) / max`` for ``pool`` draws (scale-free: every statistic here is)."""
    net = NetworkSpec("relu", 2.0, 0.0, depth, M)
    s = sample_ntk(net, np.ones((1, 784)), pool, seed=0, diagonal=True, threads=1)
    log_t = s.log_theta_diag()[:, 0]
    return np.exp(log_t - log_t.max())


def measure(pool: int) -> tuple[np.ndarray, dict[int, tuple[float, float]]]:
    """Replicates ``(depth, N, R, ESS, low, high, reference)`` and per depth the pool's
    ``(R, ESS)``."""
    reps, pools = [], {}
    for depth in DEPTHS:
        t0 = time.perf_counter()
        x = _pool(depth, pool)
        s1, s2 = np.sum(x), np.sum(x * x)
        pools[depth] = (pool * s2 / s1**2, tail_ess(x))
        for n, most in REPLICATES.items():
            for b in range(min(most, pool // n)):
                t = x[b * n:(b + 1) * n]
                ref = (pool - n) * (s2 - np.sum(t * t)) / (s1 - np.sum(t)) ** 2
                lo, hi = ratio_bootstrap_ci(t, seed=b)
                reps.append((depth, n, float(np.mean(t * t) / np.mean(t) ** 2), tail_ess(t),
                             lo, hi, ref))
        print(f"L = {depth}: pool R = {pools[depth][0]:.4g}, pool ESS = {pools[depth][1]:,.0f} "
              f"of {pool:,} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return np.array(reps), pools


def report(reps: np.ndarray, pools: dict[int, tuple[float, float]]) -> None:
    """The two Markdown tables of docs/ntk-variance.md."""
    print("\n| L/M | N | median ESS | median R [10%, 90% of replicates] | median 95% BCa "
          f"| coverage | upper end < ref. | ESS < {MIN_ESS:g} | reference R (its ESS) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for depth in DEPTHS:
        for n in REPLICATES:
            a = reps[(reps[:, 0] == depth) & (reps[:, 1] == n)]
            if len(a) < 2:
                continue
            cover = np.mean((a[:, 4] <= a[:, 6]) & (a[:, 6] <= a[:, 5]))
            below = np.mean(a[:, 5] < a[:, 6])
            r10, r50, r90 = np.quantile(a[:, 2], [0.1, 0.5, 0.9])
            pr, pe = pools[depth]
            print(f"| {depth / M:g} | {n:,} ({len(a)}x) | {np.median(a[:, 3]):,.0f} | "
                  f"{r50:.3g} [{r10:.3g}, {r90:.3g}] | [{np.median(a[:, 4]):.3g}, "
                  f"{np.median(a[:, 5]):.3g}] | {cover:.0%} | {below:.0%} | "
                  f"{np.mean(a[:, 3] < MIN_ESS):.0%} | {pr:.4g} ({pe:,.0f}) |")
    accurate = np.array([pools[int(d)][1] >= 1000 for d in reps[:, 0]])
    print("\nBy the replicate's ESS (depths whose reference has ESS >= 1000):")
    print("| ESS of the replicate | replicates | coverage | upper end < ref. | median R / ref. |")
    print("|---|---|---|---|---|")
    for lo_b, hi_b in zip(ESS_BINS[:-1], ESS_BINS[1:]):
        s = reps[(reps[:, 3] >= lo_b) & (reps[:, 3] < hi_b) & accurate]
        if not len(s):
            continue
        cover = np.mean((s[:, 4] <= s[:, 6]) & (s[:, 6] <= s[:, 5]))
        print(f"| [{lo_b:g}, {hi_b:g}) | {len(s)} | {cover:.0%} | {np.mean(s[:, 5] < s[:, 6]):.0%} "
              f"| {np.median(s[:, 2] / s[:, 6]):.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", type=int, default=1_000_000, help="draws per depth (1e6)")
    p.add_argument("--save", metavar="NPZ", help="also store the replicates here")
    p.add_argument("--load", metavar="NPZ", help="tabulate stored replicates (no sampling)")
    args = p.parse_args()
    if args.load:
        z = np.load(args.load)
        reps, pools = z["reps"], {int(d): (r, e) for d, r, e in z["pools"]}
    else:
        reps, pools = measure(args.pool)
        if args.save:
            np.savez(args.save, reps=reps,
                     pools=np.array([(d, *pools[d]) for d in DEPTHS]))
    report(reps, pools)


if __name__ == "__main__":
    main()
