"""Benchmark of the empirical NTK (``ntkscope.ntk.empirical_ntk``).

Run ``.venv/bin/python bench/bench_ntk.py [--threads N]`` (about two minutes). Timings use one
thread by default: on a shared two-core machine multi-threaded BLAS timings swing by 10x with
the other load, single-threaded ones by far less. Prints, from measurements in the same run:

1. the float64 matmul rate of the machine, ``torch.matmul`` of ``(B, S, M) @ (B, M, M)``
   (the shapes of the NTK's forward and backward products) and of a 1024^3 product;
2. the full NTK at ``S = 128``, ``M = 256``, ``M0 = 784``, float64, depths 5/20/50, for one
   network and a batch of 8: time, arithmetic rate (flops of the algorithm, counted below)
   and its ratio to the matmul rate; each NTK timing is interleaved with matmul timings and
   both take the best of several repeats, so machine load affects them alike;
3. the torch.func Jacobian contraction (``ntkscope.ntk_reference``) at depth 20: time,
   speedup of the structured NTK and their largest relative difference;
4. peak memory of the full NTK at ``S = 128``, depth 50, ``M = 1024`` (float64, one network),
   measured as the peak resident set size (``ru_maxrss``) of a fresh subprocess, which counts
   every allocation of torch's CPU allocator; reported in total and above the process state
   just before the call (Python, torch, the network's own weights).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from ntkscope import MLP, empirical_ntk
from ntkscope.ntk_reference import reference_ntk

S, M, M0 = 128, 256, 784


def ntk_flops(widths: tuple[int, ...], s: int, batch: int) -> float:
    """Floating-point operations of the structured full NTK (2 per multiply-add).

    Per layer ``l = 1..L+1`` (``M_{l-1} -> M_l``): forward ``2 S M_{l-1} M_l``, input Gram
    ``2 S^2 M_{l-1}``; for ``l <= L`` the signal Gram ``2 S^2 M_l``; for ``l >= 2`` the
    backward product ``2 S M_l M_{l-1}``. Elementwise work (O(S M) per layer) is not counted.
    """
    total = 0
    for l in range(1, len(widths)):
        m_in, m_out = widths[l - 1], widths[l]
        total += 2 * s * m_in * m_out + 2 * s * s * m_in
        if l < len(widths) - 1:
            total += 2 * s * s * m_out
        if l >= 2:
            total += 2 * s * m_out * m_in
    return float(total * batch)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_rate(batch: int, s: int, m: int, repeats: int = 20, distinct: int = 1) -> float:
    """float64 flop rate of torch.matmul (batch, s, m) @ (batch, m, m).

    ``distinct = 1``: the same operands every call (they stay in cache, the best case);
    ``distinct = L``: one product with each of ``L`` different weight tensors per timing, as a
    forward pass through ``L`` layers streams its weights from memory.
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(batch, s, m, dtype=torch.float64, generator=gen)
    bs = [torch.randn(batch, m, m, dtype=torch.float64, generator=gen) for _ in range(distinct)]
    t = best_time(lambda: [torch.matmul(a, b) for b in bs], repeats)
    return 2.0 * batch * s * m * m * distinct / t


def inputs(s: int) -> torch.Tensor:
    x = torch.randn(s, M0, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return x * (M0**0.5) / x.norm(dim=1, keepdim=True)


def interleaved(
    ntk: Callable[[], object], batch: int, depth: int, rounds: int = 4
) -> tuple[float, float, float]:
    """(best NTK time, best cache-hot matmul rate, best streaming matmul rate through
    ``depth`` distinct weight tensors), measured alternately."""
    t_ntk, hot, stream = float("inf"), 0.0, 0.0
    for _ in range(rounds):
        hot = max(hot, matmul_rate(batch, S, M))
        t_ntk = min(t_ntk, best_time(ntk, 3))
        stream = max(stream, matmul_rate(batch, S, M, repeats=2, distinct=depth))
    return t_ntk, hot, stream


_MEMORY_SCRIPT = """
import json, resource, time, torch
from ntkscope import MLP, empirical_ntk
def rss():
    # VmHWM: peak resident set of this process image (ru_maxrss would include the parent's
    # peak inherited through fork); every torch CPU allocation that is touched counts.
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
base = rss()
net = MLP(input_dim=784, width=1024, depth=50, activation="relu", sigma_w2=2.0, sigma_b2=0.5)
params = net.init(batch=1, seed=0)
x = torch.randn(128, 784, dtype=torch.float64)
before = rss()
t0 = time.perf_counter()
K = empirical_ntk(net, params, x)
elapsed = time.perf_counter() - t0
print(json.dumps({"base": base, "before": before, "peak": rss(), "seconds": elapsed,
                  "weights": sum(w.numel() * 8 for w in params.weights),
                  "finite": bool(torch.isfinite(K).all())}))
"""


def memory_check() -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: stable timings on a shared machine)",
    )
    threads = parser.parse_args().threads
    torch.set_num_threads(threads)
    t_start = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), float64\n")
    mem = memory_check()  # first, in a fresh subprocess

    print("1. Machine float64 matmul rate")
    print(f"   (1,128,256)@(1,256,256), cache-hot:  {matmul_rate(1, S, M) / 1e9:7.1f} GFLOP/s")
    print(f"   (8,128,256)@(8,256,256), cache-hot:  {matmul_rate(8, S, M) / 1e9:7.1f} GFLOP/s")
    print(
        f"   1024 x 1024 x 1024:                  "
        f"{matmul_rate(1, 1024, 1024, repeats=5) / 1e9:7.1f} GFLOP/s\n"
    )

    print(f"2. Full NTK, S={S}, M={M}, M0={M0}, ReLU sw2=2 sb2=0.5, float64 (interleaved)")
    print("   hot: the same (B,128,256)@(B,256,256) product repeated (operands in cache);")
    print("   stream: one such product per layer through L distinct weight tensors.")
    print("   depth batch  time/net  NTK GFLOP/s  hot GFLOP/s  ratio  stream GFLOP/s  ratio")
    x = inputs(S)
    times: dict[tuple[int, int], float] = {}
    for depth in (5, 20, 50):
        net = MLP(M0, M, depth, "relu", sigma_w2=2.0, sigma_b2=0.5)
        for batch in (1, 8):
            params = net.init(batch=batch, seed=0)
            t, hot, stream = interleaved(
                lambda net=net, params=params: empirical_ntk(net, params, x), batch, depth
            )
            times[depth, batch] = t
            rate = ntk_flops(net.layer_widths, S, batch) / t
            print(
                f"   {depth:5d} {batch:5d} {1e3 * t / batch:7.1f} ms {rate / 1e9:12.1f} "
                f"{hot / 1e9:12.1f} {rate / hot:6.2f} {stream / 1e9:15.1f} "
                f"{rate / stream:6.2f}"
            )
    print()

    print("3. torch.func Jacobian contraction, depth 20, one network")
    net = MLP(M0, M, 20, "relu", sigma_w2=2.0, sigma_b2=0.5)
    params = net.init(batch=1, seed=0)
    t0 = time.perf_counter()
    k_ref = reference_ntk(net, params, x)
    t_ref = time.perf_counter() - t0
    k = empirical_ntk(net, params, x)
    diff = float((k - k_ref).abs().max() / k_ref.abs().max())
    t_fast = times[20, 1]
    print(
        f"   reference {t_ref:.2f} s, structured {1e3 * t_fast:.1f} ms: "
        f"speedup {t_ref / t_fast:.0f}x, max relative difference {diff:.1e}\n"
    )

    print("4. Peak memory, full NTK S=128, depth 50, M=1024, float64, one network")
    mib = 2.0**20
    print(
        f"   peak RSS {mem['peak'] / mib:.0f} MiB (target < 1024 MiB): python+torch "
        f"{mem['base'] / mib:.0f} MiB, with the network {mem['before'] / mib:.0f} MiB "
        f"(weights {mem['weights'] / mib:.0f} MiB); the NTK call adds "
        f"{(mem['peak'] - mem['before']) / mib:.0f} MiB; {mem['seconds']:.2f} s; "
        f"finite {mem['finite']}"
    )
    print(f"\ntotal benchmark time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
