"""The sweep engine: resume, failures, SIGKILL safety, the Dask executor, progress output."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from ntkscope.progress import Progress
from ntkscope.store import Store, cell_key
from ntkscope.sweep import Cell, CellOutput, demo_cell, grid, run_sweep
from ntkscope.validation import NtkscopeInputError

SMALL = {"inits": 6, "size": 12}


def contents(store: Store) -> dict[str, tuple]:
    """Everything a row says about the result (not when or how fast it was computed)."""
    return {
        r.key: (r.kind, r.config, r.summary, r.status,
                None if r.samples is None else r.samples.tobytes(),
                None if r.error is None else r.error.splitlines()[0])
        for r in store.records()
    }


def bad_return(config):
    """A cell function with the wrong return type (top level, so workers can import it)."""
    return [config["seed"]]


def thread_report(config):
    """How many threads the worker's torch and BLAS may use."""
    import torch

    return {"torch": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"),
            "pid": os.getpid()}, []


def test_cell_and_grid():
    cells = grid("demo", {"sw2": [1.0, 2], "seed": range(3)}, depth=3)
    assert len(cells) == 6
    assert [c.config["seed"] for c in cells[:3]] == [0, 1, 2]  # last axis fastest
    assert cells[3].config == {"sw2": 2, "seed": 0, "depth": 3}
    assert cells[0] == Cell("demo", {"depth": 3.0, "seed": 0, "sw2": 1})
    assert cells[0].key == cell_key("demo", {"depth": 3, "seed": 0, "sw2": 1.0})
    assert len(set(cells)) == 6
    floats = Cell("demo", {"sw2": 2.0, "w": np.int64(3), "v": (np.float32(0.5),)})
    assert floats.config == {"sw2": 2.0, "w": 3, "v": [0.5]}  # what the cell function gets
    assert type(floats.config["sw2"]) is float and type(floats.config["w"]) is int
    with pytest.raises(NtkscopeInputError, match="empty"):
        grid("demo", {"seed": []})
    with pytest.raises(NtkscopeInputError, match="both"):
        grid("demo", {"seed": [1]}, seed=2)
    with pytest.raises(NtkscopeInputError, match="list of values"):
        grid("demo", {"seed": 3})


def test_progress_counts_and_quiet(capsys):
    with Progress(3, "cells", unit="cell", quiet=True) as bar:
        bar.update()
        bar.update(ok=False, n=2)
        bar.write("hidden")
    assert (bar.done, bar.failed) == (3, 2)
    assert capsys.readouterr() == ("", "")
    with Progress(2, "cells", unit="cell") as bar:
        bar.update(ok=False)
        bar.update()
    err = capsys.readouterr().err
    assert "2/2 done, 1 failed" in err and "cell/s" in err


def test_demo_cell_is_deterministic():
    a, b = demo_cell({"seed": 3, **SMALL}), demo_cell({"seed": 3, **SMALL})
    assert isinstance(a, CellOutput) and a.summary == b.summary
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.summary["n"] == 6 and a.samples.shape == (6,)
    assert demo_cell({"seed": 4, **SMALL}).summary != a.summary


@pytest.mark.parametrize("kwargs, message", [
    ({"executor": "spark"}, "executor"),
    ({"workers": 0}, "workers"),
    ({"scheduler": "tcp://127.0.0.1:8786"}, "scheduler"),
    ({"fn": lambda c: c}, "top-level function"),
    ({"cells": "demo"}, "cells"),
    ({"cells": [{"seed": 1}]}, "cells\\[0\\]"),
    ({"store": "results.sqlite"}, "store"),
    ({"connect_timeout": 0, "executor": "dask"}, "connect_timeout"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with Store(tmp_path / "s.sqlite") as store:
        args = {"cells": grid("demo", {"seed": [1]}), "fn": demo_cell, "store": store, **kwargs}
        with pytest.raises(NtkscopeInputError, match=message):
            run_sweep(**args)
        assert len(store) == 0


def test_resume_computes_only_missing_cells_in_cell_order(tmp_path):
    cells = grid("demo", {"seed": range(6)}, **SMALL)
    with Store(tmp_path / "s.sqlite") as store:
        first = run_sweep(cells[:2] + cells[:1], demo_cell, store, workers=2, quiet=True)
        assert (first.computed, first.cached, first.failed) == (2, 0, 0)
        assert [r.key for r in first.records] == [cells[0].key, cells[1].key, cells[0].key]
        created = {r.key: r.created for r in store.records()}

        order = cells[::-1]
        second = run_sweep(order, demo_cell, store, workers=2, quiet=True)
        assert (second.computed, second.cached, second.failed) == (4, 2, 0)
        assert len(store) == 6
        assert {k: store.get(k).created for k in created} == created  # cached rows untouched
        assert [r.key for r in second.records] == [c.key for c in order]
        for cell, summary, samples in zip(order, second.summaries, second.samples, strict=True):
            direct = demo_cell(cell.config)
            assert summary == direct.summary
            np.testing.assert_array_equal(samples, direct.samples)

        third = run_sweep(cells, demo_cell, store, workers=2, quiet=True)
        assert (third.computed, third.cached) == (0, 6) and third.ok


def test_failing_cell_recorded_and_retried(tmp_path, capsys):
    flag = tmp_path / "flag"
    cells = grid("demo", {"seed": range(3)}, **SMALL)
    flaky = Cell("demo", {"seed": 9, **SMALL, "fail_unless_exists": str(flag)})
    wrong = Cell("wrong", {"seed": 1})
    with Store(tmp_path / "s.sqlite") as store:
        report = run_sweep([*cells, flaky], demo_cell, store, workers=2)
        assert (report.computed, report.failed, report.ok) == (4, 1, False)
        (rec,) = report.failures()
        assert rec.key == flaky.key and rec.status == "failed" and rec.samples is None
        assert rec.error.startswith("RuntimeError: demo cell failure:")
        assert "Traceback" in rec.error and rec.wall_time >= 0
        err = capsys.readouterr().err
        assert "4/4 done, 1 failed" in err and "cell/s" in err

        again = run_sweep([*cells, flaky], demo_cell, store, workers=2, quiet=True)
        assert (again.computed, again.failed) == (0, 1)  # failures are not retried by default
        assert capsys.readouterr().err == ""

        flag.touch()
        retried = run_sweep([*cells, flaky], demo_cell, store, workers=2, quiet=True,
                            retry_failed=True)
        assert (retried.computed, retried.cached, retried.failed) == (1, 3, 0)
        assert store.get(flaky.key).summary["n"] == SMALL["inits"]

        bad = run_sweep([wrong], bad_return, store, workers=1, quiet=True)
        assert bad.failed == 1
        assert bad.records[0].error.startswith("TypeError: a cell function must return")


def test_crashed_worker_fails_its_cell_and_the_sweep_goes_on(tmp_path):
    cells = grid("demo", {"seed": range(8)}, **SMALL)
    crash = Cell("demo", {"seed": 0, "crash": True})
    with Store(tmp_path / "s.sqlite") as store:
        report = run_sweep([*cells[:3], crash, *cells[3:]], demo_cell, store, workers=2,
                           quiet=True)
        assert (report.computed, report.failed) == (9, 1)  # only the culprit
        rec = store.get(crash.key)
        assert rec.status == "failed" and rec.error.startswith("worker process died")
        assert all(r.ok for r in report.records if r.key != crash.key)
        for cell, rec in zip(cells, report.records[:3] + report.records[4:], strict=True):
            np.testing.assert_array_equal(rec.samples, demo_cell(cell.config).samples)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_fails_fast(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        start = time.perf_counter()
        with pytest.raises(NtkscopeInputError, match="cannot reach the Dask scheduler"):
            run_sweep(grid("demo", {"seed": [1]}), demo_cell, store, executor="dask",
                      scheduler=f"tcp://127.0.0.1:{_free_port()}", quiet=True)
        assert time.perf_counter() - start < 10
        assert len(store) == 0


@pytest.mark.slow
def test_dask_local_cluster_matches_local_executor(tmp_path):
    cells = [*grid("demo", {"seed": range(6)}, **SMALL),
             Cell("demo", {"seed": 1, "fail_unless_exists": str(tmp_path / "none")})]
    with Store(tmp_path / "local.sqlite") as local, Store(tmp_path / "dask.sqlite") as dask:
        a = run_sweep(cells, demo_cell, local, workers=2, quiet=True)
        b = run_sweep(cells, demo_cell, dask, executor="dask", workers=2, quiet=True)
        assert (b.computed, b.failed, b.executor) == (7, 1, "dask")
        assert contents(dask) == contents(local)
        assert [r.key for r in b.records] == [r.key for r in a.records]


def test_local_workers_are_single_threaded_processes(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with Store(tmp_path / "s.sqlite") as store:
        report = run_sweep(grid("threads", {"seed": range(4)}), thread_report, store,
                           workers=2, quiet=True)
    assert {s["torch"] for s in report.summaries} == {1}
    assert {s["omp"] for s in report.summaries} == {"1"}
    assert os.getpid() not in {s["pid"] for s in report.summaries}
    assert "OMP_NUM_THREADS" not in os.environ  # the driver's environment is left alone


@pytest.mark.slow
def test_dask_existing_scheduler_address(tmp_path):
    import dask
    from dask.distributed import LocalCluster

    cells = grid("demo", {"seed": range(4)}, **SMALL)
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}), \
            LocalCluster(n_workers=1, threads_per_worker=2, processes=True, protocol="tcp",
                         dashboard_address=":0") as cluster:
        with Store(tmp_path / "tcp.sqlite") as store:
            report = run_sweep(cells, demo_cell, store, executor="dask",
                               scheduler=cluster.scheduler_address, quiet=True)
            assert cluster.scheduler_address.startswith("tcp://")
            assert report.ok and report.computed == 4
            for cell, rec in zip(cells, report.records, strict=True):
                np.testing.assert_array_equal(rec.samples, demo_cell(cell.config).samples)
            threads = run_sweep(grid("threads", {"seed": range(2)}), thread_report, store,
                                executor="dask", scheduler=cluster.scheduler_address,
                                quiet=True)
            assert {s["torch"] for s in threads.summaries} == {1}


KILL_SCRIPT = """
from ntkscope.store import Store
from ntkscope.sweep import demo_cell, grid, run_sweep

if __name__ == "__main__":
    cells = grid("demo", {{"seed": range({n})}}, inits=64, size=16, sleep=0.1)
    with Store({path!r}) as store:
        run_sweep(cells, demo_cell, store, workers=2, quiet=True)
"""


def _count_rows(path) -> int:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute("SELECT count(*) FROM cells").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:  # not created yet
        return 0


@pytest.mark.slow
def test_sigkill_leaves_complete_rows_and_rerun_finishes(tmp_path):
    n = 24
    path = tmp_path / "killed.sqlite"
    script = tmp_path / "sweep_script.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT.format(n=n, path=str(path))))
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while _count_rows(path) < 3:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "the sweep made no progress"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # the driver, mid-sweep
        proc.wait(timeout=10)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its orphaned workers
        except ProcessLookupError:
            pass
    assert proc.returncode == -signal.SIGKILL

    cells = grid("demo", {"seed": range(n)}, inits=64, size=16, sleep=0.1)
    with Store(path) as store:
        assert store.integrity_check() == "ok"
        partial = list(store.records())
        assert 3 <= len(partial) < n
        for rec in partial:  # only complete rows
            assert rec.ok and rec.samples.shape == (64,)
            assert rec.summary["mean"] == pytest.approx(rec.samples.mean(), rel=1e-12)
        resumed = run_sweep(cells, demo_cell, store, workers=2, quiet=True)
        assert (resumed.computed, resumed.cached) == (n - len(partial), len(partial))
        with Store(tmp_path / "clean.sqlite") as clean:
            run_sweep(cells, demo_cell, clean, workers=2, quiet=True)
            assert contents(store) == contents(clean)
