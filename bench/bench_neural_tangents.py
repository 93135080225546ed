"""``ntkscope.module_ntk`` next to neural-tangents' empirical NTK (JAX) on the same shapes.

neural-tangents is JAX-only and is not a dependency of ntkscope, so this benchmark runs its side
with another Python that has it (``--nt-python``), for example a scratch virtual environment::

    python3 -m venv /tmp/ntvenv
    /tmp/ntvenv/bin/pip install jax==0.4.30 jaxlib==0.4.30 tf2jax==0.3.6 neural-tangents==0.6.5
    .venv/bin/python bench/bench_neural_tangents.py --nt-python /tmp/ntvenv/bin/python

(neural-tangents 0.6.5 imports ``jax.core.Jaxpr``, which jax 0.10 removed; 0.4.30 works.)

Both sides are float64 (``jax_enable_x64``), on one CPU thread (torch ``set_num_threads(1)``,
XLA ``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``), each measurement
in a fresh subprocess that reports the best of ``--repeats`` calls after the first and the
peak resident set added by the first call (``VmHWM``, as ``bench/bench_module_ntk.py``). JAX's
first call includes compiling the kernel function (reported apart: ``compile``). The weights
differ between the two sides (random draws of the same architecture): timings depend only on
the shapes. neural-tangents' implementations: ``STRUCTURED_DERIVATIVES`` (Novak et al. 2022,
"Fast Finite Width Neural Tangent Kernel"), ``JACOBIAN_CONTRACTION``, ``NTK_VECTOR_PRODUCTS``.

Cases (those of ``bench/bench_module_ntk.py``): the MLP 784-256x20-1 tanh at ``S = 128``, and
the MNIST CNN (conv 1->32, 32->32, avg-pool, 32->64, avg-pool, linear 3136->128->10, ReLU) at
``S = 64``, ``O = 10``, trace and full kernels. ``--quick``: smaller ``S``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_module_ntk import MIB, measure

NT_IMPLS = ("STRUCTURED_DERIVATIVES", "JACOBIAN_CONTRACTION", "NTK_VECTOR_PRODUCTS")

# The JAX side, run by --nt-python as ``python -c NT_WORKER JOB``: no ntkscope import.
NT_WORKER = r'''
import json, sys, time
job = json.loads(sys.argv[1])

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0

import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import neural_tangents as nt
from neural_tangents import stax

def mlp():
    layers = [stax.Dense(256, W_std=1.5 ** 0.5, b_std=0.1 ** 0.5, parameterization="standard"),
              stax.Elementwise(fn=jnp.tanh)]
    for _ in range(19):
        layers += [stax.Dense(256, W_std=1.5 ** 0.5, b_std=0.1 ** 0.5,
                              parameterization="standard"), stax.Elementwise(fn=jnp.tanh)]
    layers += [stax.Dense(1, W_std=1.5 ** 0.5, b_std=0.1 ** 0.5, parameterization="standard")]
    return stax.serial(*layers), (job["s"], 784)

def cnn():
    conv = lambda c: stax.Conv(c, (3, 3), padding="SAME", W_std=2 ** 0.5, b_std=0.1,
                               parameterization="standard")
    net = stax.serial(conv(32), stax.Relu(), conv(32), stax.Relu(),
                      stax.AvgPool((2, 2), strides=(2, 2)), conv(64), stax.Relu(),
                      stax.AvgPool((2, 2), strides=(2, 2)), stax.Flatten(),
                      stax.Dense(128, W_std=2 ** 0.5, parameterization="standard"), stax.Relu(),
                      stax.Dense(10, W_std=1.0, parameterization="standard"))
    return net, (job["s"], 28, 28, 1)

(init_fn, apply_fn, _), shape = {"mlp": mlp, "cnn": cnn}[job["case"]]()
key = jax.random.PRNGKey(0)
_, params = init_fn(key, shape)
x = jax.random.normal(jax.random.PRNGKey(1), shape, dtype=jnp.float64)
n_params = sum(p.size for p in jax.tree_util.tree_leaves(params))
impl = getattr(nt.NtkImplementation, job["impl"])
trace_axes = (-1,) if job["output"] == "trace" else ()
fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=trace_axes, vmap_axes=0,
                                 implementation=impl))
before = hwm()
t0 = time.perf_counter()
k = fn(x, None, params).block_until_ready()
first = time.perf_counter() - t0
peak = hwm()
best = float("inf")
for _ in range(job["repeats"]):
    t0 = time.perf_counter()
    fn(x, None, params).block_until_ready()
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"seconds": best, "first": first, "compile": max(0.0, first - best),
                  "before": before, "peak": peak, "params": int(n_params),
                  "shape": list(k.shape), "finite": bool(jnp.isfinite(k).all()),
                  "jax": jax.__version__, "nt": nt.__version__}))
'''


def nt_measure(python: str, job: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = dict(os.environ, XLA_FLAGS="--xla_cpu_multi_thread_eigen=false "
               "intra_op_parallelism_threads=1", JAX_PLATFORMS="cpu",
               TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS="1")
    try:
        out = subprocess.run([python, "-c", NT_WORKER, json.dumps(job)], capture_output=True,
                             text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {out.returncode}: {last[:200]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nt-python", required=True, metavar="PYTHON",
                    help="a Python with jax and neural-tangents installed")
    ap.add_argument("--quick", action="store_true", help="S = 16 (a minute)")
    ap.add_argument("--repeats", type=int, default=2, help="timed calls after the first")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per measurement")
    ap.add_argument("--cases", default="mlp,cnn-trace,cnn-full",
                    help="comma-separated subset of mlp, cnn-trace, cnn-full")
    ap.add_argument("--impls", default=",".join(NT_IMPLS),
                    help="neural-tangents implementations (default all three)")
    args = ap.parse_args(argv)
    s_mlp, s_cnn = (16, 16) if args.quick else (128, 64)
    chosen = set(args.cases.split(","))
    impls = [i.strip().upper() for i in args.impls.split(",") if i.strip()]
    cases = [c for name, c in (("mlp", ("mlp", s_mlp, "trace")),
                               ("cnn-trace", ("cnn", s_cnn, "trace")),
                               ("cnn-full", ("cnn", s_cnn, "full"))) if name in chosen]
    import torch

    print(f"torch {torch.__version__}, 1 thread, float64; neural-tangents via {args.nt_python}")
    start = time.perf_counter()
    versions = ""
    for case, s, output in cases:
        print(f"\n{case.upper()} S={s} {output}")
        print(f"   {'implementation':34s} {'time':>10s} {'compile':>9s} {'call adds':>10s}  "
              "ratio to module_ntk")
        ours = measure({"case": case, "s": s, "output": output, "impl": "module_ntk",
                        "threads": 1, "repeats": args.repeats}, args.timeout)
        if "error" in ours:
            print(f"   module_ntk: {ours['error']}")
            continue
        base = ours["seconds"]
        print(f"   {'ntkscope module_ntk':34s} {base:9.3f}s {'-':>9s} "
              f"{(ours['peak'] - ours['before']) / MIB:8.0f}MiB  1.00")
        for impl in impls:
            r = nt_measure(args.nt_python, {"case": case, "s": s, "output": output,
                                             "impl": impl, "repeats": args.repeats},
                           args.timeout)
            name = f"neural-tangents {impl.lower()}"
            if "error" in r:
                print(f"   {name:34s} {r['error']}")
                continue
            print(f"   {name:34s} {r['seconds']:9.3f}s {r['compile']:8.2f}s "
                  f"{(r['peak'] - r['before']) / MIB:8.0f}MiB  {r['seconds'] / base:.2f}"
                  + ("" if r["finite"] else "  NON-FINITE"))
            if "nt" in r:
                versions = f"jax {r['jax']}, neural-tangents {r['nt']}"
    if versions:
        print(f"\n{versions}")
    print(f"\ntotal benchmark time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
