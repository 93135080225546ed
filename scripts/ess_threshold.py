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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", type=int, default=1_000_000, help="draws per depth (1e6)")
    args = p.parse_args()
    rows, reps = [], []
    for depth in DEPTHS:
        t0 = time.perf_counter()
        x = _pool(depth, args.pool)
        s1, s2 = np.sum(x), np.sum(x * x)
        pool_ratio = args.pool * s2 / s1**2
        pool_ess = tail_ess(x)
        for n, most in REPLICATES.items():
            k = min(most, args.pool // n)
            if k < 2:
                continue
            out = []
            for b in range(k):
                t = x[b * n:(b + 1) * n]
                m = args.pool - n
                ref = m * (s2 - np.sum(t * t)) / (s1 - np.sum(t)) ** 2
                lo, hi = ratio_bootstrap_ci(t, seed=b)
                r = float(np.mean(t * t) / np.mean(t) ** 2)
                e = tail_ess(t)
                out.append((r, e, lo, hi, ref))
                reps.append((depth, n, r, e, lo, hi, ref))
            a = np.array(out)
            cover = np.mean((a[:, 2] <= a[:, 4]) & (a[:, 4] <= a[:, 3]))
            below = np.mean(a[:, 3] < a[:, 4])
            flagged = np.mean(a[:, 1] < MIN_ESS)
            rows.append((depth / M, n, k, np.median(a[:, 1]), np.median(a[:, 0]),
                         np.quantile(a[:, 0], 0.1), np.quantile(a[:, 0], 0.9),
                         np.median(a[:, 2]), np.median(a[:, 3]), cover, below, flagged,
                         pool_ratio, pool_ess))
        print(f"L = {depth}: pool R = {pool_ratio:.4g}, pool ESS = {pool_ess:.0f} of "
              f"{args.pool} ({time.perf_counter() - t0:.0f} s)", flush=True)

    print("\n| L/M | N | replicates | median ESS | median R [10%, 90%] | median 95% BCa "
          "| coverage | upper end below ref. | flagged (ESS < %g) | reference R (pool ESS) |"
          % MIN_ESS)
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (lm, n, k, ess, r, r10, r90, lo, hi, cov, below, flag, pr, pe) in rows:
        print(f"| {lm:g} | {n:,} | {k} | {ess:,.0f} | {r:.3g} [{r10:.3g}, {r90:.3g}] | "
              f"[{lo:.3g}, {hi:.3g}] | {cov:.0%} | {below:.0%} | {flag:.0%} | "
              f"{pr:.4g} ({pe:,.0f}) |")

    a = np.array([rep[2:] for rep in reps])
    lm = np.array([rep[0] / M for rep in reps])
    print("\nCoverage by the replicate's ESS (L/M <= 0.5, where the reference is accurate):")
    print("| ESS | replicates | coverage | upper end below ref. | median R / ref. |")
    print("|---|---|---|---|---|")
    for lo_b, hi_b in zip(ESS_BINS[:-1], ESS_BINS[1:]):
        sel = (a[:, 1] >= lo_b) & (a[:, 1] < hi_b) & (lm <= 0.5)
        if not np.any(sel):
            continue
        s = a[sel]
        cover = np.mean((s[:, 2] <= s[:, 4]) & (s[:, 4] <= s[:, 3]))
        below = np.mean(s[:, 3] < s[:, 4])
        print(f"| [{lo_b:g}, {hi_b:g}) | {int(sel.sum())} | {cover:.0%} | {below:.0%} | "
              f"{np.median(s[:, 0] / s[:, 4]):.2f} |")


if __name__ == "__main__":
    main()
