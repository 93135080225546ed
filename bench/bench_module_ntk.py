"""Benchmark of the empirical NTK of any PyTorch model (``ntkscope.module_ntk``).

Run ``.venv/bin/python bench/bench_module_ntk.py [--quick] [--cases mlp,cnn,resnet]
[--threads N]``. Everything is float64. Every measurement runs in a fresh subprocess, which
reports its wall time (best of a few calls after the first, or the first call alone when it is
slow) and its peak resident set size (``VmHWM``, as ``bench/bench_ntk.py`` measures it: every
allocation of torch's CPU allocator that is touched counts), in total and above the process
state just before the call (Python, torch, the model and its inputs). Ratios compare
measurements of the same run. Results are compared with each other (largest relative
Frobenius difference to the first entry of each case).

Baselines are the two ``torch.func`` methods of the PyTorch tutorial "Neural Tangent Kernels"
(https://pytorch.org/tutorials/intermediate/neural_tangent_kernels.html), written as the
tutorial writes them: ``tutorial_jacobian_contraction`` (``vmap(jacrev)`` Jacobians of both
inputs, ``N x O x P`` each, contracted with one ``einsum`` per parameter tensor; time
``N O [FP] + N^2 O^2 P`` for ``full``, ``N^2 O P`` for ``trace``) and ``tutorial_ntk_vps``
(``vmap`` over all ``N1 x N2`` pairs and the ``O`` basis vectors of one ``vjp`` + ``jvp``
each; time ``N^2 O [FP]``). Neither chunks: their memory grows with ``N O P`` and
``N^2 O x activations``; where they would not fit, they are timed on a subset of the
samples and scaled (marked ``scaled``: the Jacobian contraction by ``(N / n)^2`` for its
contraction-bound ``full`` kernel and ``N / n`` otherwise is a lower bound; NTK-vector
products are exactly ``(N / n)^2``).

Cases (the issue's targets):

1. ``nn.Sequential`` MLP 784-256x20-1 tanh (``MLP.to_module`` of the standard
   parameterization), ``S = 128``: ``module_ntk`` within 1.5x of ``empirical_ntk`` on the same
   weights, >= 50x faster than the Jacobian contraction.
2. The MNIST CNN of ``ntkscope.generic.zoo.mnist_cnn`` (430,890 parameters), ``S = 64``,
   ``O = 10``: ``trace`` >= 10x and ``full`` >= 5x faster than the faster ``torch.func``
   method, peak memory (above the state before the call) at most a quarter of its.
3. ResNet-18 (``zoo.resnet18``, BatchNorm in eval mode, 11,173,962 parameters), CIFAR-shaped
   ``3 x 32 x 32``, ``S = 128`` and ``512``, ``trace``: time and peak (target < 4 GiB); the
   Jacobian route would hold ``N O P`` float64 values (reported, not run).

``--quick`` runs small sizes of the same cases (about a minute); ``--scaling`` adds the growth
of each method's time with ``S``, ``O`` and ``P`` on small CNNs (log-log slopes).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

GIB = 2.0**30
MIB = 2.0**20


# ---------------------------------------------------------------------------------------------
# The tutorial's two methods (as the tutorial writes them)


def tutorial_fnet_single(model: nn.Module) -> Callable[[dict[str, torch.Tensor], torch.Tensor],
                                                        torch.Tensor]:
    """The model as a function of (parameters, one input), as in the tutorial."""

    def fnet_single(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, params, (x.unsqueeze(0),)).squeeze(0)

    return fnet_single


def tutorial_jacobian_contraction(fnet_single: Callable[..., torch.Tensor],
                                  params: dict[str, torch.Tensor], x1: torch.Tensor,
                                  x2: torch.Tensor, compute: str = "full") -> torch.Tensor:
    """Method 1 of the tutorial: the Jacobians of both inputs, contracted per parameter."""
    jac1 = vmap(jacrev(fnet_single), (None, 0))(params, x1)
    jac1 = [j.flatten(2) for j in jac1.values()]
    jac2 = vmap(jacrev(fnet_single), (None, 0))(params, x2)
    jac2 = [j.flatten(2) for j in jac2.values()]
    expr = {"full": "Naf,Mbf->NMab", "trace": "Naf,Maf->NM", "diagonal": "Naf,Maf->NMa"}[compute]
    return torch.stack([torch.einsum(expr, j1, j2) for j1, j2 in zip(jac1, jac2, strict=True)]
                       ).sum(0)


def tutorial_ntk_vps(func: Callable[..., torch.Tensor], params: dict[str, torch.Tensor],
                     x1: torch.Tensor, x2: torch.Tensor, compute: str = "full") -> torch.Tensor:
    """Method 2 of the tutorial: NTK-vector products, ``vmap`` over all pairs and outputs."""

    def get_ntk(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        def func_x1(params: dict[str, torch.Tensor]) -> torch.Tensor:
            return func(params, x1)

        def func_x2(params: dict[str, torch.Tensor]) -> torch.Tensor:
            return func(params, x2)

        output, vjp_fn = vjp(func_x1, params)

        def get_ntk_slice(vec: torch.Tensor) -> torch.Tensor:
            vjps = vjp_fn(vec)  # vec @ J(x1)
            _, jvps = jvp(func_x2, (params,), vjps)  # J(x2) @ vjps
            return jvps

        basis = torch.eye(output.numel(), dtype=output.dtype,
                          device=output.device).view(output.numel(), -1)
        return vmap(get_ntk_slice)(basis)

    result = vmap(vmap(get_ntk, (None, 0)), (0, None))(x1, x2)
    if compute == "full":
        return result
    if compute == "trace":
        return torch.einsum("NMKK->NM", result)
    return torch.einsum("NMKK->NMK", result)


# ---------------------------------------------------------------------------------------------
# Cases: a model and its inputs


def _mlp_case(s: int) -> tuple[nn.Module, torch.Tensor, Any]:
    from ntkscope import MLP

    net = MLP(784, 256, 20, "tanh", sigma_w2=1.5, sigma_b2=0.1)
    params = net.init(batch=1, seed=0)
    x = torch.randn(s, 784, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = x * (784**0.5) / x.norm(dim=1, keepdim=True)
    return net.to_module(params, 0), x, (net, params)


def _cnn_case(s: int, channels: tuple[int, int, int] = (32, 32, 64),
              classes: int = 10) -> tuple[nn.Module, torch.Tensor, Any]:
    from ntkscope.generic import zoo

    torch.manual_seed(0)
    model = zoo.mnist_cnn(channels=channels, num_classes=classes).double().eval()
    x = torch.randn(s, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return model, x, None


def _resnet_case(s: int) -> tuple[nn.Module, torch.Tensor, Any]:
    from ntkscope.generic import zoo

    torch.manual_seed(0)
    model = zoo.resnet18().double().eval()
    x = torch.randn(s, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return model, x, None


def build_case(case: str, s: int, **kw: Any) -> tuple[nn.Module, torch.Tensor, Any]:
    return {"mlp": _mlp_case, "cnn": _cnn_case, "resnet": _resnet_case}[case](s, **kw)


def kernel_fn(impl: str, model: nn.Module, x: torch.Tensor, output: str, extra: Any,
              max_memory: str | None) -> Callable[[], torch.Tensor]:
    """The call to time: ``module_ntk[:METHOD]``, ``structured`` (``empirical_ntk``),
    ``tutorial-jacobian`` or ``tutorial-ntvp``."""
    if impl.startswith("module_ntk"):
        from ntkscope import module_ntk

        method = impl.partition(":")[2] or "auto"
        return lambda: module_ntk(model, x, output=output, method=method, max_memory=max_memory)
    if impl == "structured":
        from ntkscope import empirical_ntk

        net, params = extra
        return lambda: empirical_ntk(net, params, x, diagonal=output == "diagonal")[0]
    params = {k: v.detach() for k, v in model.named_parameters()}
    fnet = tutorial_fnet_single(model)
    if impl == "tutorial-jacobian":
        return lambda: tutorial_jacobian_contraction(fnet, params, x, x, output)
    if impl == "tutorial-ntvp":
        return lambda: tutorial_ntk_vps(fnet, params, x, x, output)
    raise ValueError(impl)


# ---------------------------------------------------------------------------------------------
# One measurement in a fresh process


def _rss_peak() -> int:
    """Peak resident set of this process (VmHWM; ru_maxrss would include a forked parent's)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(job: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(job["threads"])
    base = _rss_peak()
    model, x, extra = build_case(job["case"], job["s"], **job.get("kw", {}))
    fn = kernel_fn(job["impl"], model, x, job["output"], extra, job.get("max_memory"))
    before = _rss_peak()
    t0 = time.perf_counter()
    with torch.no_grad() if job["impl"] == "structured" else torch.enable_grad():
        k = fn().detach()
    first = time.perf_counter() - t0
    peak = _rss_peak()
    best = first
    for _ in range(job["repeats"] if first < 5.0 else 0):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    if job["output"] == "full" and k.ndim == 4 and k.shape[-1] == 1 and job["impl"] == "structured":
        k = k[..., 0, 0]
    if job.get("save"):
        torch.save(k.reshape(-1).clone(), job["save"])
    return {"seconds": best, "first": first, "base": base, "before": before, "peak": peak,
            "params": sum(p.numel() for p in model.parameters()),
            "finite": bool(torch.isfinite(k).all())}


def measure(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``job`` in a fresh subprocess; ``{"error": ...}`` if it fails or times out."""
    try:
        out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {out.returncode}: {last[:160]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Report


class Case:
    """One benchmark case: several implementations on the same model and inputs."""

    def __init__(self, title: str, case: str, s: int, output: str, args: argparse.Namespace,
                 kw: dict[str, Any] | None = None) -> None:
        self.title, self.case, self.s, self.output, self.args = title, case, s, output, args
        self.kw = kw or {}
        self.results: dict[str, dict[str, Any]] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix="bench_module_ntk_"))

    def run(self, impl: str, s: int | None = None, label: str | None = None,
            max_memory: str | None = None) -> dict[str, Any]:
        n = self.s if s is None else s
        label = label or impl
        save = str(self.tmp / f"{len(self.results)}.pt") if n == self.s else None
        job = {"case": self.case, "s": n, "output": self.output, "impl": impl,
               "threads": self.args.threads, "repeats": self.args.repeats, "kw": self.kw,
               "max_memory": max_memory or self.args.max_memory, "save": save}
        r = measure(job, self.args.timeout)
        if "error" not in r and n != self.s:  # timed on a subset: scale to S
            power = 2.0 if impl == "tutorial-ntvp" or self.output == "full" else 1.0
            r["seconds"] *= (self.s / n) ** power
            r["scaled"] = f"n={n}, x(S/n)^{power:g}"
        r["save"] = save
        self.results[label] = r
        return r

    def difference(self, label: str) -> float | None:
        saved = [r["save"] for r in self.results.values() if r.get("save") and "error" not in r]
        mine = self.results[label]
        if not saved or not mine.get("save") or "error" in mine or mine["save"] == saved[0]:
            return None
        a, b = torch.load(mine["save"]), torch.load(saved[0])
        return float((a - b).norm() / b.norm())

    def print(self) -> None:
        print(f"\n{self.title}")
        print(f"   {'method':<24}{'time':>12}{'peak RSS':>12}{'call adds':>12}  notes")
        for label, r in self.results.items():
            if "error" in r:
                print(f"   {label:<24}{'-':>12}{'-':>12}{'-':>12}  {r['error']}")
                continue
            diff = self.difference(label)
            notes = [r.get("scaled", ""), "" if diff is None else f"rel. diff {diff:.1e}",
                     "" if r["finite"] else "NOT FINITE"]
            print(f"   {label:<24}{r['seconds']:>11.3f}s{r['peak'] / MIB:>9.0f}MiB"
                  f"{(r['peak'] - r['before']) / MIB:>9.0f}MiB  "
                  + ", ".join(n for n in notes if n))

    def ratio(self, slow: str, fast: str) -> float | None:
        a, b = self.results.get(slow, {}), self.results.get(fast, {})
        if "seconds" not in a or "seconds" not in b:
            return None
        return a["seconds"] / b["seconds"]


def verdict(name: str, value: float | None, target: str, ok: bool | None) -> None:
    shown = "-" if value is None else f"{value:.2f}x"
    state = "n/a" if ok is None else ("pass" if ok else "FAIL")
    print(f"   {name}: {shown} (target {target}): {state}")


def run_mlp(args: argparse.Namespace) -> None:
    s = 32 if args.quick else 128
    c = Case(f"1. nn.Sequential MLP 784-256x20-1 tanh, S={s}, trace (O=1)", "mlp", s, "trace",
             args)
    c.run("structured", label="empirical_ntk (MLP)")
    c.run("module_ntk")
    c.run("tutorial-jacobian")
    c.print()
    r1 = c.ratio("module_ntk", "empirical_ntk (MLP)")
    r2 = c.ratio("tutorial-jacobian", "module_ntk")
    verdict("module_ntk / empirical_ntk", r1, "<= 1.5x", None if r1 is None else r1 <= 1.5)
    verdict("tutorial Jacobian contraction / module_ntk", r2, ">= 50x",
            None if r2 is None else r2 >= 50)


def run_cnn(args: argparse.Namespace) -> None:
    s = 16 if args.quick else 64
    for output, target in (("trace", 10.0), ("full", 5.0)):
        c = Case(f"2. MNIST CNN (430,890 parameters), S={s}, O=10, output={output}", "cnn", s,
                 output, args)
        c.run("module_ntk")
        for impl in args.module_methods:
            c.run(f"module_ntk:{impl}")
        c.run("tutorial-jacobian")
        c.run("tutorial-ntvp", s=min(s, 8))
        c.print()
        base = [k for k in ("tutorial-jacobian", "tutorial-ntvp") if "seconds" in c.results[k]]
        if not base:
            verdict("faster torch.func method / module_ntk", None, f">= {target:g}x", None)
            continue
        faster = min(base, key=lambda k: c.results[k]["seconds"])
        r = c.ratio(faster, "module_ntk")
        verdict(f"{faster} / module_ntk", r, f">= {target:g}x", None if r is None else r >= target)
        mine, theirs = c.results["module_ntk"], c.results[faster]
        if "peak" in mine and "scaled" not in theirs:
            m = (mine["peak"] - mine["before"]) / max(theirs["peak"] - theirs["before"], 1)
            print(f"   peak memory added by the call, module_ntk / {faster}: {m:.3f} "
                  f"(target <= 0.25): {'pass' if m <= 0.25 else 'FAIL'}")


def run_resnet(args: argparse.Namespace) -> None:
    sizes = (4, 8) if args.quick else tuple(int(v) for v in args.resnet_sizes.split(","))
    for s in sizes:
        c = Case(f"3. ResNet-18 (11,173,962 parameters), CIFAR 3x32x32, S={s}, trace", "resnet",
                 s, "trace", args)
        r = c.run("module_ntk", max_memory=args.resnet_budget)
        c.print()
        if "peak" in r:
            print(f"   peak RSS {r['peak'] / GIB:.2f} GiB (target < 4 GiB): "
                  f"{'pass' if r['peak'] < 4 * GIB else 'FAIL'}; budget --max-memory "
                  f"{args.resnet_budget}")
        n_jac = s * 10 * r.get("params", 11_173_962) * 8
        print(f"   the Jacobian route holds N O P float64 = {n_jac / 1e9:.0f} GB per input "
              "batch (not run)")


def run_scaling(args: argparse.Namespace) -> None:
    """Log-log slopes of each method's time in S, O and P on small CNNs."""
    impls = ["module_ntk", "tutorial-jacobian", "tutorial-ntvp"]
    sweeps: list[tuple[str, list[tuple[float, int, dict[str, Any]]]]] = [
        ("S", [(s, s, {"channels": (8, 8, 16)}) for s in (4, 8, 16)]),
        ("O", [(o, 8, {"channels": (8, 8, 16), "classes": o}) for o in (2, 4, 8)]),
        ("P", [(0.0, 8, {"channels": (c, c, 2 * c)}) for c in (4, 8, 16)]),
    ]
    print("\n4. Growth of the time (trace kernel, small CNNs): log-log slope over the sweep")
    for name, points in sweeps:
        for impl in impls:
            xs, ts = [], []
            for value, s, kw in points:
                job = {"case": "cnn", "s": s, "output": "trace", "impl": impl,
                       "threads": args.threads, "repeats": args.repeats, "kw": kw,
                       "max_memory": None, "save": None}
                r = measure(job, args.timeout)
                if "error" in r:
                    break
                xs.append(math.log(r["params"] if name == "P" else value))
                ts.append(math.log(r["seconds"]))
            if len(xs) < 2:
                print(f"   {name}: {impl:<20} failed")
                continue
            slope = (ts[-1] - ts[0]) / (xs[-1] - xs[0])
            print(f"   {name}: {impl:<20} slope {slope:5.2f}  "
                  f"({', '.join(f'{math.exp(t):.3f}s' for t in ts)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--cases", default="mlp,cnn,resnet",
                        help="comma-separated subset of mlp, cnn, resnet (default all)")
    parser.add_argument("--scaling", action="store_true",
                        help="also the growth of each method's time with S, O and P")
    parser.add_argument("--module-methods", default="",
                        help="module_ntk methods to time by name besides auto on the CNN, "
                        "e.g. layerwise,jacobian,ntvp")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: stable timings on a shared machine)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed calls after the first for calls under 5 s (default 2)")
    parser.add_argument("--max-memory", default=None, help="module_ntk budget (default its own)")
    parser.add_argument("--resnet-sizes", default="128,512",
                        help="sample counts S of the ResNet-18 case (default 128,512)")
    parser.add_argument("--resnet-budget", default="3GiB",
                        help="module_ntk budget for the ResNet-18 case (default 3GiB)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds per measurement (default 3600)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    args.module_methods = [m for m in args.module_methods.split(",") if m]
    t0 = time.perf_counter()
    print(f"torch {torch.__version__}, {args.threads} thread(s), float64"
          + (", quick sizes" if args.quick else ""))
    runners = {"mlp": run_mlp, "cnn": run_cnn, "resnet": run_resnet}
    for case in args.cases.split(","):
        runners[case.strip()](args)
    if args.scaling:
        run_scaling(args)
    print(f"\ntotal benchmark time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
