"""Benchmark of batched full-batch gradient descent (``ntkscope.training``).

Run ``.venv/bin/python bench/bench_training.py [--threads N] [--steps N] [--device cuda]``.
Prints, from
measurements in the same run:

1. gradient-descent steps per second of 16 networks trained together by
   :func:`ntkscope.training.train` (structured backprop, batched over networks) versus a loop
   over 16 separately trained ``torch.nn.Module`` networks (``nn.Linear`` + activation,
   autograd ``loss.backward()`` and a manual SGD update ``p -= lr p.grad``), both on the same
   weights, ``L = 10``, ``M = 256``, ``S = 128``, ``M0 = 784``, ReLU, float64. A "step" is one
   update of all 16 networks. The two are timed in alternation (best of ``--repeats`` rounds
   of ``--steps`` steps each), so machine load hits both alike; the final weights of both are
   compared after the same number of steps;
2. the same comparison for small networks (``L = 10``, ``M = 32``, ``S = 32``), where per-call
   overheads rather than arithmetic dominate;
3. steps per second (best of 2) of the paper's largest setting, ``M = 512``,
   ``L = 50``, ``S = 128`` (one network and a batch of 16), and the projected cost of the
   paper's Figures 3/4 grids (38 values of ``sw2`` times 26 depths up to 50 at ``M = 256``, at
   most ``1e5`` steps each).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from ntkscope.networks import MLP, Params
from ntkscope.threads import torch_threads
from ntkscope.training import LearningRate, Recording, StoppingRule, train

S, M0 = 128, 784


def data(seed: int = 0, samples: int = S) -> tuple[np.ndarray, np.ndarray]:
    """``samples`` inputs on the sphere ``|x|^2 = M0`` and ``+-1`` targets."""
    from ntkscope.datasets import load_dataset

    d = load_dataset("gaussian", samples, seed)
    return d.X, d.y


def step_flops(widths: tuple[int, ...], samples: int, gram: bool = False) -> float:
    """Floating-point operations of one gradient step of one network (2 per multiply-add):
    per layer the forward product and the weight gradient, ``2 S M_{l-1} M_l`` each, and for
    layers ``2..L+1`` the backpropagation to the layer input, ``2 S M_l M_{l-1}``. Elementwise
    work is not counted. ``gram``: the first layer in the Gram form of ``train`` (``S < M0``),
    whose two products have ``S`` in place of ``M0``."""
    total = 0
    for l in range(1, len(widths)):
        m_in = samples if (l == 1 and gram) else widths[l - 1]
        total += (4 if l == 1 else 6) * samples * m_in * widths[l]
    return float(total)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (timings of asynchronous devices)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(M: int, samples: int, device: torch.device, repeats: int = 10) -> float:
    """Best float64 GFLOP/s of ``(16, S, M) @ (16, M, M)`` (a hidden layer of 16 networks)."""
    a = torch.randn(16, samples, M, dtype=torch.float64, device=device)
    w = torch.randn(16, M, M, dtype=torch.float64, device=device)
    torch.bmm(a, w)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        torch.bmm(a, w)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * 16 * samples * M * M / best / 1e9


def modules_from(params: Params) -> list[nn.Sequential]:
    """One ``nn.Sequential`` (Linear, ReLU, ..., Linear) per network, with its weights."""
    nets = []
    for i in range(params.batch):
        layers: list[nn.Module] = []
        for l, (w, b) in enumerate(zip(params.weights, params.biases)):
            lin = nn.Linear(w.shape[2], w.shape[1], dtype=w.dtype, device=w.device)
            with torch.no_grad():
                lin.weight.copy_(w[i])
                lin.bias.copy_(b[i])
            layers.append(lin)
            if l < params.depth:
                layers.append(nn.ReLU())
        nets.append(nn.Sequential(*layers))
    return nets


def autograd_steps(nets: list[nn.Sequential], X: torch.Tensor, y: torch.Tensor, lr: float,
                   steps: int) -> float:
    """``steps`` SGD steps of every module in turn (autograd); returns the wall time."""
    sync(X.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        for m in nets:
            loss = 0.5 * ((m(X)[:, 0] - y) ** 2).mean()
            for p in m.parameters():
                p.grad = None
            loss.backward()
            with torch.no_grad():
                for p in m.parameters():
                    p.sub_(p.grad, alpha=lr)
    sync(X.device)
    return time.perf_counter() - t0


def batched_steps(net: MLP, params: Params, X: np.ndarray, y: np.ndarray, lr: float,
                  steps: int) -> tuple[float, Params]:
    """Wall time of ``steps`` updates of all networks by :func:`train` (no early stopping, no
    snapshots) and the final parameters: ``TrainRun.step_seconds``, the training loop without
    its NTKs (``Theta_0``, final kernel) and without the one-off set-up."""
    run = train(net, X, y, params, rate=LearningRate(lr),
                stop=StoppingRule(steps, patience=None), record=Recording(()))
    return run.step_seconds, run.params


def compare(args: argparse.Namespace, L: int = 10, M: int = 256, samples: int = S,
            steps: int | None = None) -> dict[str, float]:
    B = 16
    steps = args.steps if steps is None else steps
    net = MLP(M0, M, L, "relu", 2.0, 0.1)
    params = net.init(B, seed=0, device=args.device)
    X, y = data(samples=samples)
    Xt, yt = torch.as_tensor(X).to(args.device), torch.as_tensor(y).to(args.device)
    lr = 1e-4
    nets = modules_from(params)
    autograd_steps(nets, Xt, yt, lr, 1)  # warm-up
    nets = modules_from(params)
    best_a = best_b = float("inf")
    final_b = None
    for _ in range(args.repeats):
        ta = autograd_steps(nets, Xt, yt, lr, steps)
        tb, final_b = batched_steps(net, params, X, y, lr, steps)
        best_a, best_b = min(best_a, ta / steps), min(best_b, tb / steps)
    # Same number of steps from the same weights: the final weights must agree.
    ref = modules_from(params)
    autograd_steps(ref, Xt, yt, lr, steps)
    assert final_b is not None
    diff = max(
        float((final_b.weights[l][i] - lin.weight.detach()).abs().max())
        for i, m in enumerate(ref)
        for l, lin in enumerate(x for x in m if isinstance(x, nn.Linear))
    )
    flops = step_flops(net.layer_widths, samples) * B
    flops_b = step_flops(net.layer_widths, samples, gram=samples < M0) * B
    out = {
        "autograd_loop_steps_per_s": 1.0 / best_a,
        "batched_steps_per_s": 1.0 / best_b,
        "speedup": best_a / best_b,
        "max_weight_difference": diff,
        "autograd_loop_gflops": flops / best_a / 1e9,
        "batched_gflops": flops_b / best_b / 1e9,
        "matmul_gflops": matmul_rate(M, samples, args.device),
    }
    where = (f"{torch.get_num_threads()} thread(s)" if args.device.type == "cpu"
             else torch.cuda.get_device_name(args.device))
    print(f"L={L} M={M} S={samples} B={B} float64 relu, {where}, "
          f"best of {args.repeats} x {steps} steps")
    print(f"  autograd loop of {B} nn.Modules : {out['autograd_loop_steps_per_s']:.3f} steps/s "
          f"({best_a / B * 1e3:.1f} ms per network-step)")
    print(f"  batched train()              : {out['batched_steps_per_s']:.3f} steps/s "
          f"({best_b / B * 1e3:.1f} ms per network-step)")
    print(f"  speed-up {out['speedup']:.2f}x, final weights differ by at most {diff:.2e}")
    print(f"  arithmetic per network-step: autograd {flops / B / 1e6:.0f} MFLOP at "
          f"{out['autograd_loop_gflops']:.1f} GFLOP/s, batched {flops_b / B / 1e6:.0f} MFLOP "
          f"at {out['batched_gflops']:.1f} GFLOP/s; bmm of a hidden layer "
          f"{out['matmul_gflops']:.1f} GFLOP/s")
    return out


def paper_setting(args: argparse.Namespace) -> dict[str, float]:
    X, y = data()
    out: dict[str, float] = {}
    for L, M, B in ((50, 512, 1), (50, 512, 16), (10, 256, 16), (50, 256, 16)):
        net = MLP(M0, M, L, "relu", 2.0, 0.1)
        params = net.init(B, seed=0, device=args.device)
        steps = max(2, args.steps // (4 if L == 50 else 1))
        t = min(batched_steps(net, params, X, y, 1e-5, steps)[0] for _ in range(2))
        rate = steps / t
        out[f"L{L}_M{M}_B{B}_steps_per_s"] = rate
        print(f"  L={L:2d} M={M} B={B:2d}: {rate:.3f} steps/s ({t / steps / B * 1e3:.1f} ms per "
              "network-step)")
    # Paper preset: the Figures 3/4 grids as the Figure 1 preset of ntkscope.experiments
    # (tanh: 23 values of sw2, ReLU: 15, depths 1, 2, 4, ..., 50), M = 256, S = 128, at most
    # 1e5 steps per network. Cost per network-step is linear in depth: interpolate between the
    # measured L = 10 and L = 50 rates (batch 16).
    per10 = 1.0 / (out["L10_M256_B16_steps_per_s"] * 16)
    per50 = 1.0 / (out["L50_M256_B16_steps_per_s"] * 16)
    depths = np.array([1, *range(2, 51, 2)])
    per_step = per10 + (depths - 10) * (per50 - per10) / 40
    n_sw2 = 23 + 15
    hours = float(n_sw2 * per_step.sum() * 1e5 / 3600)
    out["paper_preset_cpu_hours_upper_bound"] = hours
    print(f"  paper preset ({n_sw2} sw2 values x {len(depths)} depths = {n_sw2 * len(depths)} "
          f"networks, M=256, <= 1e5 steps each): {hours:.0f} CPU-hours at these rates if no "
          "network stops early")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the GPU case of the target)")
    args = ap.parse_args()
    args.device = torch.device(args.device)
    if args.device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available on this machine")
    with torch_threads(args.threads):
        res = compare(args)
        small = compare(args, L=10, M=32, samples=32, steps=20 * args.steps)
        res.update({f"small_{k}": v for k, v in small.items()})
        res.update(paper_setting(args))
    if args.json:
        print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
