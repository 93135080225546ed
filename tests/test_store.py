"""The results store: canonical keys, rows, refusing foreign files, export, the CLI."""

from __future__ import annotations

import csv
import json
import math
import sqlite3

import numpy as np
import pyarrow.parquet as pq
import pytest

from ntkscope import __version__
from ntkscope.cli import main as cli_main
from ntkscope.store import (
    APPLICATION_ID,
    META_COLUMNS,
    RESULT_FORMAT_VERSION,
    Store,
    canonical_json,
    cell_key,
    export_table,
    flat_table,
)
from ntkscope.validation import NtkscopeInputError

CONFIG = {"activation": "relu", "sw2": 2.0, "sb2": 0.1, "depth": 3, "width": 64,
          "inits": 4, "seed": 7}


def _fill(store: Store) -> None:
    for seed in range(3):
        cfg = {**CONFIG, "seed": seed}
        samples = np.arange(4, dtype=float) + seed
        store.put_done(cell_key("ntk_variance", cfg), "ntk_variance", cfg,
                       {"mean": float(samples.mean()), "ci": [0.5, 1.5], "n": 4}, samples, 0.25)
    store.put_failed(cell_key("ntk_change", CONFIG), "ntk_change", CONFIG,
                     "ValueError: bad width\n\nTraceback ...", 0.01)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "results.sqlite") as s:
        yield s


# -- keys ---------------------------------------------------------------------------------


def test_key_ignores_dict_order_and_int_float_spelling():
    reordered = dict(reversed(list(CONFIG.items())))
    assert cell_key("k", CONFIG) == cell_key("k", reordered)
    assert cell_key("k", {**CONFIG, "sw2": 2}) == cell_key("k", CONFIG)
    assert cell_key("k", {**CONFIG, "width": 64.0, "sb2": np.float32(0.1).item()}) != \
        cell_key("k", CONFIG)  # float32(0.1) is another number
    assert cell_key("k", {**CONFIG, "width": np.int64(64), "sw2": np.float64(2.0)}) == \
        cell_key("k", CONFIG)
    assert cell_key("k", {"w": (1, 2.0)}) == cell_key("k", {"w": [1.0, 2]})
    assert cell_key("k", {"x": -0.0}) == cell_key("k", {"x": 0})


def test_key_separates_what_changes_the_result():
    base = cell_key("k", CONFIG)
    assert cell_key("k", {**CONFIG, "seed": 8}) != base
    assert cell_key("other", CONFIG) != base
    assert cell_key("k", {**CONFIG, "sw2": 2.0000001}) != base
    assert cell_key("k", {**CONFIG, "flag": True}) != cell_key("k", {**CONFIG, "flag": 1})
    assert len(base) == 64 and int(base, 16) >= 0


def test_canonical_json_is_sorted_compact_and_versioned():
    assert canonical_json({"b": 1.0, "a": [2.5, None, "x"]}) == '{"a":[2.5,null,"x"],"b":1}'
    assert RESULT_FORMAT_VERSION >= 1


@pytest.mark.parametrize("config", [{"x": math.nan}, {"x": math.inf}, {1: 2}, {"x": object()}])
def test_key_refuses_non_canonical_config(config):
    with pytest.raises(NtkscopeInputError, match="config"):
        cell_key("k", config)


def test_key_refuses_bad_kind():
    with pytest.raises(NtkscopeInputError, match="kind"):
        cell_key("", CONFIG)


# -- rows -----------------------------------------------------------------------------------


def test_rows_round_trip(store):
    _fill(store)
    assert len(store) == 4
    key = cell_key("ntk_variance", {**CONFIG, "seed": 1})
    rec = store.get(key)
    assert rec.ok and rec.kind == "ntk_variance" and rec.config == {**CONFIG, "seed": 1, "sw2": 2}
    assert rec.samples.dtype == np.float64
    np.testing.assert_array_equal(rec.samples, [1.0, 2.0, 3.0, 4.0])
    assert rec.summary == {"mean": 2.5, "ci": [0.5, 1.5], "n": 4}
    assert rec.wall_time == 0.25 and rec.version == __version__ and rec.created > 1.6e9
    failed = store.get(cell_key("ntk_change", CONFIG))
    assert failed.status == "failed" and failed.samples is None
    assert failed.error.startswith("ValueError: bad width")
    assert store.get("0" * 64) is None
    assert [r.kind for r in store.records(kind="ntk_change")] == ["ntk_change"]
    assert len(list(store.records(status="done"))) == 3
    assert store.statuses([key, "f" * 64]) == {key: "done"}


def test_nan_in_summary_is_kept(store):
    store.put_done("a" * 64, "k", {"seed": 1}, {"var": math.nan}, [1.0])
    assert math.isnan(store.get("a" * 64).summary["var"])


def test_done_replaces_failed(store):
    key = cell_key("k", CONFIG)
    store.put_failed(key, "k", CONFIG, "boom")
    store.put_done(key, "k", CONFIG, {"m": 1.0}, np.ones(3))
    assert len(store) == 1 and store.get(key).ok
    assert store.delete([key, "0" * 64]) == 1 and len(store) == 0


def test_bad_summary_or_samples_refused_and_nothing_written(store):
    with pytest.raises(NtkscopeInputError, match="summary"):
        store.put_done("a" * 64, "k", {}, {"x": object()}, [1.0])
    with pytest.raises(NtkscopeInputError, match="samples"):
        store.put_done("a" * 64, "k", {}, {"x": 1}, ["a", "b"])
    assert len(store) == 0


def test_find_by_prefix(store):
    _fill(store)
    key = cell_key("ntk_change", CONFIG)
    assert store.find(key[:10].upper()).key == key
    with pytest.raises(NtkscopeInputError, match="no cell"):
        store.find("ffffffffffffff" if not key.startswith("ff") else "00000000000000")
    with pytest.raises(NtkscopeInputError, match="4 hex"):
        store.find("xyz")
    store.put_done(key[:8] + "0" * 56, "k", {}, {}, [])
    store.put_done(key[:8] + "1" * 56, "k", {}, {}, [])
    with pytest.raises(NtkscopeInputError, match="ambiguous"):
        store.find(key[:8])


def test_file_is_marked_wal_and_transactional(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        _fill(s)
        assert s.integrity_check() == "ok"
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert dict(db.execute("SELECT name, value FROM meta"))["schema_version"] == "1"
    db.close()
    with Store(path, create=False) as again:  # reopening keeps everything
        assert len(again) == 4


def test_rollback_journal_mode(tmp_path):
    with Store(tmp_path / "s.sqlite", journal_mode="delete") as s:
        _fill(s)
        assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    with pytest.raises(NtkscopeInputError, match="journal_mode"):
        Store(tmp_path / "t.sqlite", journal_mode="memory")


# -- refusing what is not a store ---------------------------------------------------------


def _foreign_sqlite(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE cells (key TEXT)")
    db.execute("INSERT INTO cells VALUES ('mine')")
    db.commit()
    db.close()


def _corrupt_store(path):
    with Store(path) as s:
        for i in range(200):
            s.put_done(f"{i:064x}", "k", {"seed": i}, {"m": 1.0}, np.arange(50.0))
    db = sqlite3.connect(path)  # fold the WAL into the main file, then damage the tables
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA journal_mode=delete")
    db.close()
    data = bytearray(path.read_bytes())
    data[4096 + 100: 4096 + 3000] = b"\xa5" * 2900
    data[len(data) // 2: len(data) // 2 + 5000] = b"\x5a" * 5000
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("make, message", [
    (_foreign_sqlite, "not an ntkscope results store"),
    (lambda p: p.write_text("activation,sw2\nrelu,2\n"), "not an ntkscope results store"),
    (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\x00\xff" * 3000), "corrupt"),
    (_corrupt_store, "corrupt"),
])
@pytest.mark.parametrize("create", [True, False])
def test_foreign_or_corrupt_file_refused_untouched(tmp_path, make, message, create):
    path = tmp_path / "results.sqlite"
    make(path)
    before = path.read_bytes()
    names = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(NtkscopeInputError, match=message):
        Store(path, create=create)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no journal/WAL left behind


def test_empty_files_become_stores(tmp_path):
    (tmp_path / "zero.sqlite").touch()  # e.g. a creation killed before its first commit
    db = sqlite3.connect(tmp_path / "empty.sqlite")
    db.executescript("CREATE TABLE t (x); DROP TABLE t;")
    db.close()
    assert (tmp_path / "empty.sqlite").read_bytes().startswith(b"SQLite format 3")
    for name in ("zero.sqlite", "empty.sqlite"):
        before = (tmp_path / name).read_bytes()
        # Read-only opening (`results list`) refuses them and leaves them as they are.
        with pytest.raises(NtkscopeInputError, match="is empty"):
            Store(tmp_path / name, create=False)
        assert (tmp_path / name).read_bytes() == before
        with Store(tmp_path / name) as s:
            _fill(s)
        with Store(tmp_path / name, create=False) as s:
            assert len(s) == 4


def test_directory_and_missing_paths_refused(tmp_path):
    with pytest.raises(NtkscopeInputError, match="is a directory"):
        Store(tmp_path)
    with pytest.raises(NtkscopeInputError, match="does not exist"):
        Store(tmp_path / "none.sqlite", create=False)
    assert not (tmp_path / "none.sqlite").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(NtkscopeInputError, match="not a directory"):
        Store(tmp_path / "file" / "s.sqlite")
    assert (tmp_path / "file").read_text() == "x"


def test_newer_schema_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(NtkscopeInputError, match="schema version 99"):
        Store(path)


# -- export -------------------------------------------------------------------------------


def test_flat_table_columns(store):
    _fill(store)
    store.put_done("b" * 64, "odd", {"kind": "x", "net": {"depth": 2}}, {"net.depth": 1.5}, [])
    columns, rows = flat_table(store.records())
    assert columns[: len(META_COLUMNS)] == list(META_COLUMNS)
    assert {"activation", "sw2", "seed", "mean", "ci", "n", "config.kind", "net.depth",
            "summary.net.depth"} <= set(columns)
    odd = next(r for r in rows if r["kind"] == "odd")
    assert odd["config.kind"] == "x" and odd["net.depth"] == 2 and odd["summary.net.depth"] == 1.5
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["error"] == "ValueError: bad width" and "mean" not in failed


def test_export_csv_and_parquet_round_trip(store, tmp_path):
    _fill(store)
    columns, rows = flat_table(store.records())
    out = tmp_path / "deep" / "table.csv"
    assert export_table(store, out, "csv") == 4
    with open(out, newline="") as fh:
        got = list(csv.DictReader(fh))
    assert list(got[0]) == columns
    for want, row in zip(rows, got, strict=True):
        for c in columns:
            w = want.get(c)
            if w is None:
                assert row[c] == ""
            elif isinstance(w, float):
                assert float(row[c]) == w  # full precision
            else:
                assert row[c] == str(w)

    pq_path = tmp_path / "table.parquet"
    assert export_table(store, pq_path, "parquet", kind="ntk_variance") == 3
    table = pq.read_table(pq_path)
    want_columns, want = flat_table(store.records(kind="ntk_variance"))
    assert table.column_names == want_columns
    data = table.to_pylist()
    assert [d["seed"] for d in data] == [r["seed"] for r in want]
    assert str(table.schema.field("seed").type) == "int64"
    assert str(table.schema.field("mean").type) == "double"
    assert [d["mean"] for d in data] == [r["mean"] for r in want]
    assert json.loads(data[0]["ci"]) == [0.5, 1.5]


def test_export_refuses_bad_format_and_directory(store, tmp_path):
    with pytest.raises(NtkscopeInputError, match="format"):
        export_table(store, tmp_path / "x.xlsx", "xlsx")
    with pytest.raises(NtkscopeInputError, match="directory"):
        export_table(store, tmp_path, "csv")


# -- command line -------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run ``ntkscope results ...`` through the real ``main`` (other subcommands left out)."""
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("results",))

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli_main.main(["results", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_list_show_export(tmp_path, cli):
    path = tmp_path / "r.sqlite"
    with Store(path) as s:
        _fill(s)
    code, out, err = cli("list", "--store", str(path))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4 and "4 cells" in err
    assert any(line.startswith("ntk_change") and "failed" in line and "bad width" in line
               for line in lines)
    code, out, _ = cli("list", "--store", str(path), "--kind", "ntk_variance", "--status", "done")
    assert code == 0 and len(out.splitlines()) == 3 and "0.25s" in out

    key = cell_key("ntk_variance", {**CONFIG, "seed": 2})
    code, out, _ = cli("show", key[:12], "--store", str(path))
    row = json.loads(out)
    assert code == 0 and row["key"] == key and row["samples"] == [2.0, 3.0, 4.0, 5.0]
    assert row["config"]["seed"] == 2 and row["summary"]["mean"] == 3.5

    out_file = tmp_path / "t.parquet"
    code, _, err = cli("export", "--format", "parquet", "--out", str(out_file),
                       "--store", str(path))
    assert code == 0 and pq.read_table(out_file).num_rows == 4 and "wrote 4 cells" in err


@pytest.mark.parametrize("argv, message", [
    (["list", "--store", "{tmp}/missing.sqlite"], "does not exist"),
    (["list", "--store", "{tmp}"], "is a directory"),
    (["list", "--store", "{tmp}/foreign.sqlite"], "not an ntkscope results store"),
    (["show", "zz", "--store", "{tmp}/r.sqlite"], "hex digits"),
    (["show", "abcdef", "--store", "{tmp}/r.sqlite"], "no cell"),
    (["export", "--format", "csv", "--out", "{tmp}", "--store", "{tmp}/r.sqlite"], "directory"),
])
def test_cli_bad_input_exit_2(tmp_path, cli, argv, message):
    Store(tmp_path / "r.sqlite").close()
    _foreign_sqlite(tmp_path / "foreign.sqlite")
    before = (tmp_path / "foreign.sqlite").read_bytes()
    code, out, err = cli(*[a.format(tmp=tmp_path) for a in argv])
    assert code == 2 and out == ""
    assert err.startswith("ntkscope results: error:") and message in err
    assert len(err.strip().splitlines()) == 1
    assert (tmp_path / "foreign.sqlite").read_bytes() == before
