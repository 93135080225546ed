"""Benchmark: cells per second of Figure 1's quick grid with 1 and 2 local workers and a
2-worker Dask LocalCluster (the real `ntk_variance` cells, each run into a fresh store).

Baseline: 1 local worker, measured in the same run; prints the speed-ups. A deterministic
subset of the grid (every ``--stride``-th cell, default 4: 96 of 384 cells, all widths and
depths represented) keeps the run to a few minutes.

    .venv/bin/python bench/bench_figure1.py [--stride 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ntkscope.experiments.ntk_variance_figures import FIG1, KIND, heatmap_cells, ntk_variance_cell
from ntkscope.store import Store
from ntkscope.sweep import Cell, run_sweep


def run(cells: list[Cell], executor: str, workers: int, path: Path) -> float:
    with Store(path) as store:
        t0 = time.perf_counter()
        report = run_sweep(cells, ntk_variance_cell, store, executor=executor, workers=workers,
                           quiet=True)
        elapsed = time.perf_counter() - t0
    assert report.ok and report.computed == len(cells)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stride", type=int, default=4)
    args = parser.parse_args()
    configs = heatmap_cells(FIG1["quick"])[:: args.stride]
    cells = [Cell(KIND, c) for c in configs]
    print(f"Figure 1 quick grid: {len(cells)} of {len(configs) * args.stride} cells "
          f"(every {args.stride}th), fresh store per executor")
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for name, executor, workers in (("local x1", "local", 1), ("local x2", "local", 2),
                                        ("dask LocalCluster x2", "dask", 2)):
            t = run(cells, executor, workers, Path(tmp) / f"{executor}{workers}.sqlite")
            results[name] = t
            base = results["local x1"]
            print(f"  {name:22s} {t:7.1f} s  {len(cells) / t:6.2f} cells/s  "
                  f"speed-up {base / t:4.2f}x", flush=True)


if __name__ == "__main__":
    main()
