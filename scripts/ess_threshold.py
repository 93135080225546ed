"""The experiment behind ``ntkscope.defaults.MIN_ESS`` (docs/ntk-variance.md, "Heavy tails").

ReLU ``(sw2, sb2) = (2, 0)``, ``M0 = 784``, ``x = (1, ..., 1)``, exact low-rank sampler (seed 0,
one torch thread). Two grids:

* heavy: ``M = 10``, ``L = 1, 2, 5, 10, 20`` (``L/M = 0.1 ... 2``), a pool of ``--pool``
  draws per depth cut into disjoint replicates of ``N = 100, 1e3, 1e4, 1e5`` draws;
* light: ``M = 100``, ``L = 1, 5, 10`` (``L/M = 0.01 ... 0.1``), a pool of ``--light-pool``
  draws cut into replicates of ``N = 10, 30, 100, 1000``.

Per replicate: the sample ``R``, the tail diagnostic ``ESS = (sum t^2)^2 / sum t^4`` and the
95% BCa interval (2000 resamples, as ``ntk_variance``). The reference for a replicate is ``R``
of the rest of its pool (the replicate left out). Printed: a Markdown row per ``(M, L, N)``
(coverage of the reference, how often the interval lies entirely below it, how often the rule
of :func:`ntkscope.statistics.ratio_is_lower_bound` flags the replicate).

    .venv/bin/python scripts/ess_threshold.py --save ess.npz   # ~5 min of one core
    .venv/bin/python scripts/ess_threshold.py --load ess.npz   # the tables again
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ntkscope import NetworkSpec
from ntkscope.defaults import MIN_ESS, MIN_ESS_FRACTION
from ntkscope.sampling import sample_ntk
from ntkscope.statistics import ratio_bootstrap_ci, ratio_is_lower_bound, tail_ess

# (width, depths, {replicate size: most replicates}); bootstrap cost ~ replicates x N x 2000.
HEAVY = (10, (1, 2, 5, 10, 20), {100: 500, 1_000: 200, 10_000: 50, 100_000: 10})
LIGHT = (100, (1, 5, 10), {10: 500, 30: 300, 100: 200, 1_000: 50})


def _pool(width: int, depth: int, pool: int) -> np.ndarray:
    """``Theta0(x, x) / max`` for ``pool`` draws (scale-free: every statistic here is)."""
    net = NetworkSpec("relu", 2.0, 0.0, depth, width)
    s = sample_ntk(net, np.ones((1, 784)), pool, seed=0, diagonal=True, threads=1)
    log_t = s.log_theta_diag()[:, 0]
    return np.exp(log_t - log_t.max())


def measure(grid: tuple, pool: int) -> tuple[list[tuple], dict[tuple[int, int], tuple]]:
    """Replicates ``(M, L, N, R, ESS, low, high, reference)``; per ``(M, L)`` the pool's
    ``(R, ESS)``."""
    width, depths, replicates = grid
    reps, pools = [], {}
    for depth in depths:
        t0 = time.perf_counter()
        x = _pool(width, depth, pool)
        s1, s2 = np.sum(x), np.sum(x * x)
        pools[(width, depth)] = (pool * s2 / s1**2, tail_ess(x))
        for n, most in replicates.items():
            for b in range(min(most, pool // n)):
                t = x[b * n:(b + 1) * n]
                ref = (pool - n) * (s2 - np.sum(t * t)) / (s1 - np.sum(t)) ** 2
                lo, hi = ratio_bootstrap_ci(t, seed=b)
                reps.append((width, depth, n, float(np.mean(t * t) / np.mean(t) ** 2),
                             tail_ess(t), lo, hi, ref))
        r, e = pools[(width, depth)]
        print(f"M = {width}, L = {depth}: pool R = {r:.4g}, pool ESS = {e:,.0f} of {pool:,} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return reps, pools


def report(reps: np.ndarray, pools: dict[tuple[int, int], tuple]) -> None:
    """The Markdown table of docs/ntk-variance.md."""
    print("\n| M | L/M | N (replicates) | median ESS | median R [10%, 90%] | median 95% BCa "
          "| coverage | CI below ref. | flagged | reference R (its ESS) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (width, depth), (pr, pe) in pools.items():
        for n in sorted({int(v) for v in reps[(reps[:, 0] == width) & (reps[:, 1] == depth), 2]}):
            a = reps[(reps[:, 0] == width) & (reps[:, 1] == depth) & (reps[:, 2] == n)]
            if len(a) < 2:
                continue
            cover = np.mean((a[:, 5] <= a[:, 7]) & (a[:, 7] <= a[:, 6]))
            below = np.mean(a[:, 6] < a[:, 7])
            flagged = np.mean([ratio_is_lower_bound(e, n) for e in a[:, 4]])
            r10, r50, r90 = np.quantile(a[:, 3], [0.1, 0.5, 0.9])
            print(f"| {width} | {depth / width:g} | {n:,} ({len(a)}) | {np.median(a[:, 4]):,.1f} "
                  f"| {r50:.3g} [{r10:.3g}, {r90:.3g}] | [{np.median(a[:, 5]):.3g}, "
                  f"{np.median(a[:, 6]):.3g}] | {cover:.0%} | {below:.0%} | {flagged:.0%} | "
                  f"{pr:.4g} ({pe:,.0f}) |")
    print(f"\nflagged: ESS < {MIN_ESS:g} and ESS < {MIN_ESS_FRACTION:g} N "
          "(ntkscope.statistics.ratio_is_lower_bound)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", type=int, default=1_000_000, help="draws per heavy depth (1e6)")
    p.add_argument("--light-pool", type=int, default=200_000,
                   help="draws per light depth (2e5)")
    p.add_argument("--save", metavar="NPZ", help="also store the replicates here")
    p.add_argument("--load", metavar="NPZ", help="tabulate stored replicates (no sampling)")
    args = p.parse_args()
    if args.load:
        z = np.load(args.load)
        reps = z["reps"]
        pools = {(int(m), int(d)): (r, e) for m, d, r, e in z["pools"]}
    else:
        reps, pools = measure(HEAVY, args.pool)
        light_reps, light_pools = measure(LIGHT, args.light_pool)
        reps, pools = np.array(reps + light_reps), {**pools, **light_pools}
        if args.save:
            np.savez(args.save, reps=reps, pools=np.array([(*k, *v) for k, v in pools.items()]))
    report(reps, pools)


if __name__ == "__main__":
    main()
