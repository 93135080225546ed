"""The results store: one SQLite file holding every finished sweep cell.

A *cell* is one parameter combination of an experiment grid (for example activation, sw2,
sb2, depth, width, number of initializations and seed). Its row is keyed by
:func:`cell_key`, the SHA-256 of a canonical JSON encoding of everything that determines the
result: the cell's kind, its config (seed included) and :data:`RESULT_FORMAT_VERSION`. A row
holds the config, summary statistics (JSON), the raw per-initialization samples (``.npy``
bytes, float64, so confidence intervals can be recomputed later), the status (``done`` or
``failed``), the error message of a failed cell, the wall time, the ntkscope version and the
creation time.

The file is marked as ntkscope's by ``PRAGMA application_id`` and a ``meta`` table holding the
schema version. Opening anything else (a foreign SQLite file, a corrupt file, a directory)
raises :class:`~ntkscope.validation.NtkscopeInputError` before a single byte is written.
Every write is one transaction in WAL mode, so a process killed at any moment (SIGKILL
included) leaves only complete rows. Only one process (the sweep driver) should write.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ntkscope._version import __version__
from ntkscope.validation import NtkscopeInputError

#: Where the command line looks when ``--store`` is not given.
DEFAULT_STORE_PATH = Path("results") / "ntkscope.sqlite"
#: ``PRAGMA application_id`` of an ntkscope store (ASCII "NTKS").
APPLICATION_ID = 0x4E544B53
#: Layout of the tables; a file with another version is refused.
SCHEMA_VERSION = 1
#: Part of every cell key: bump it when the meaning of stored results changes, so old rows
#: are no longer found (and are recomputed) instead of being silently reused.
RESULT_FORMAT_VERSION = 1

STATUSES = ("done", "failed")
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cells (
    key       TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    config    TEXT NOT NULL,
    summary   TEXT,
    samples   BLOB,
    status    TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    error     TEXT,
    wall_time REAL,
    version   TEXT NOT NULL,
    created   REAL NOT NULL
);
CREATE INDEX cells_kind ON cells (kind);
"""
_COLUMNS = "key, kind, config, summary, samples, status, error, wall_time, version, created"


# --------------------------------------------------------------------------------------------
# Canonical encoding and keys


def canonical(value: Any, name: str = "config", *, fold: bool = True) -> Any:
    """``value`` as plain JSON data, in canonical form for hashing.

    Mapping keys must be strings; tuples and arrays become lists; NumPy scalars become Python
    numbers. With ``fold`` (the form keys are computed from) integral floats become ints, so
    ``1.0`` and ``1`` are the same parameter, and ``-0.0`` becomes ``0``; ``fold=False`` keeps
    floats as floats (the form a cell function receives and the store shows). Non-finite
    floats and other types are refused.
    """
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise NtkscopeInputError(f"{name}: keys must be strings, got {k!r}")
            out[k] = canonical(v, f"{name}.{k}", fold=fold)
        return out
    if isinstance(value, (list, tuple)):
        return [canonical(v, f"{name}[{i}]", fold=fold) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return canonical(value.tolist(), name, fold=fold)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if not math.isfinite(f):
            raise NtkscopeInputError(f"{name}: must be finite, got {f}")
        return int(f) if fold and f.is_integer() else f
    raise NtkscopeInputError(
        f"{name}: expected JSON data (numbers, strings, bools, lists, dicts), got {value!r}"
    )


def canonical_json(value: Any, name: str = "config", *, fold: bool = True) -> str:
    """Compact JSON of :func:`canonical` ``(value)`` with sorted keys."""
    return json.dumps(canonical(value, name, fold=fold), sort_keys=True, separators=(",", ":"))


def cell_key(kind: str, config: Mapping[str, Any]) -> str:
    """SHA-256 hex digest identifying a cell's result: kind, config and result format."""
    if not isinstance(kind, str) or not kind:
        raise NtkscopeInputError(f"kind: expected a non-empty string, got {kind!r}")
    if not isinstance(config, Mapping):
        raise NtkscopeInputError(f"config: expected a dict, got {type(config).__name__}")
    payload = canonical_json({"config": config, "format": RESULT_FORMAT_VERSION, "kind": kind})
    return hashlib.sha256(payload.encode()).hexdigest()


def samples_to_bytes(samples: Any) -> bytes:
    """Raw samples as ``.npy`` bytes of a float64 array (refuses objects and strings)."""
    try:
        arr = np.ascontiguousarray(samples, dtype=np.float64)
    except (TypeError, ValueError):
        raise NtkscopeInputError(
            f"samples: expected an array of numbers, got {type(samples).__name__}"
        ) from None
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def samples_from_bytes(blob: bytes | None) -> np.ndarray | None:
    """Inverse of :func:`samples_to_bytes` (``None`` stays ``None``)."""
    if blob is None:
        return None
    return np.load(io.BytesIO(blob), allow_pickle=False)


# --------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True)
class CellRecord:
    """One row of the store."""

    key: str
    kind: str
    config: dict[str, Any]
    summary: dict[str, Any] | None
    samples: np.ndarray | None
    status: str
    error: str | None
    wall_time: float | None
    version: str
    created: float

    @property
    def ok(self) -> bool:
        """True for a finished (``done``) cell."""
        return self.status == "done"

    def to_json(self) -> dict[str, Any]:
        """The full row as JSON-ready data (samples as a list, with shape and dtype)."""
        samples = self.samples
        return {
            "key": self.key,
            "kind": self.kind,
            "status": self.status,
            "config": self.config,
            "summary": self.summary,
            "samples": None if samples is None else samples.tolist(),
            "samples_shape": None if samples is None else list(samples.shape),
            "error": self.error,
            "wall_time": self.wall_time,
            "version": self.version,
            "created": self.created,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
        }


def _record(row: tuple) -> CellRecord:
    key, kind, config, summary, samples, status, error, wall, version, created = row
    return CellRecord(
        key=key,
        kind=kind,
        config=json.loads(config),
        summary=None if summary is None else json.loads(summary),
        samples=samples_from_bytes(samples),
        status=status,
        error=error,
        wall_time=wall,
        version=version,
        created=created,
    )


def summary_json(summary: Mapping[str, Any]) -> str:
    """Summary statistics as JSON; NaN/inf are kept (as JSON's NaN/Infinity extension)."""
    if not isinstance(summary, Mapping):
        raise NtkscopeInputError(f"summary: expected a dict, got {type(summary).__name__}")

    def plain(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple, np.ndarray)):
            return [plain(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        return v

    try:
        return json.dumps(plain(summary), sort_keys=True)
    except TypeError as exc:
        raise NtkscopeInputError(f"summary: not JSON data ({exc})") from None


# --------------------------------------------------------------------------------------------
# The store


class Store:
    """An ntkscope results store (SQLite file), opened or created at ``path``.

    ``create=False`` refuses a missing file instead of creating it (the read-only commands).
    ``journal_mode`` is ``"wal"`` (default; fast, crash-safe) or ``"delete"`` (a rollback
    journal, for file systems without shared memory such as some network mounts).
    Usable as a context manager; :meth:`close` when done.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_STORE_PATH,
        *,
        create: bool = True,
        journal_mode: str = "wal",
    ) -> None:
        if journal_mode not in ("wal", "delete"):
            raise NtkscopeInputError(
                f"journal_mode: expected 'wal' or 'delete', got {journal_mode!r}"
            )
        self.path = Path(path)
        exists = _check_file(self.path, create)
        if not exists:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise NtkscopeInputError(
                    f"store: cannot create directory {self.path.parent}: {exc.strerror}"
                ) from None
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise NtkscopeInputError(f"store: cannot open {self.path}: {exc}") from None
        try:
            if not exists or self._is_empty_database():
                if not create:  # the read-only commands never write a schema
                    raise NtkscopeInputError(f"store: {self.path} is empty (no results stored yet)")
                self._create()
            else:
                self._check_ntkscope()
            self._db.execute(f"PRAGMA journal_mode={journal_mode}")
            self._db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            self._db.close()
            raise NtkscopeInputError(f"store: cannot open {self.path}: {exc}") from None
        except BaseException:
            self._db.close()
            raise

    # -- opening ----------------------------------------------------------------------------

    def _create(self) -> None:
        with self._transaction():
            self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.executemany(
                "INSERT INTO meta (name, value) VALUES (?, ?)",
                [
                    ("format", "ntkscope results store"),
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("created_by", __version__),
                ],
            )

    def _is_empty_database(self) -> bool:
        """An SQLite file without any table (e.g. a creation killed before it committed)."""
        try:
            app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
            objects = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError:
            return False  # _check_ntkscope reports it
        return app_id == 0 and objects == 0

    def _check_ntkscope(self) -> None:
        """Refuse a foreign or corrupt file; reads only, so nothing is modified."""
        where = f"store: {self.path}"
        try:
            app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
            if app_id != APPLICATION_ID:
                raise NtkscopeInputError(
                    f"{where} is an SQLite file but not an ntkscope results store "
                    "(refusing to touch it; pass another --store)"
                )
            meta = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
            check = self._db.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            raise NtkscopeInputError(
                f"{where} is corrupt or not an ntkscope results store ({exc})"
            ) from None
        if check != [("ok",)]:
            raise NtkscopeInputError(f"{where} is corrupt ({check[0][0]})")
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise NtkscopeInputError(
                f"{where} has store schema version {version}; this ntkscope ({__version__}) "
                f"reads version {SCHEMA_VERSION}"
            )

    # -- plumbing ---------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self.path)

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, tuple(params)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise NtkscopeInputError(f"store: {self.path}: {exc}") from None

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- writing ----------------------------------------------------------------------------

    def put_done(
        self,
        key: str,
        kind: str,
        config: Mapping[str, Any],
        summary: Mapping[str, Any],
        samples: Any,
        wall_time: float | None = None,
    ) -> None:
        """Record a finished cell (replacing a failed row with the same key)."""
        self._put(key, kind, config, summary_json(summary), samples_to_bytes(samples),
                  "done", None, wall_time)

    def put_failed(
        self,
        key: str,
        kind: str,
        config: Mapping[str, Any],
        error: str,
        wall_time: float | None = None,
    ) -> None:
        """Record a cell whose computation raised ``error``."""
        self._put(key, kind, config, None, None, "failed", str(error), wall_time)

    def _put(self, key: str, kind: str, config: Mapping[str, Any], summary: str | None,
             samples: bytes | None, status: str, error: str | None,
             wall_time: float | None) -> None:
        wall = None if wall_time is None else float(wall_time)
        row = (key, kind, canonical_json(config, fold=False), summary, samples, status, error,
               wall, __version__, time.time())
        with self._transaction():
            self._db.execute(
                f"INSERT OR REPLACE INTO cells ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", row
            )

    def delete(self, keys: Iterable[str]) -> int:
        """Remove the rows of ``keys``; returns how many existed."""
        keys = list(keys)
        with self._transaction():
            cur = self._db.executemany("DELETE FROM cells WHERE key = ?", [(k,) for k in keys])
        return cur.rowcount

    # -- reading ----------------------------------------------------------------------------

    def get(self, key: str) -> CellRecord | None:
        """The row of ``key``, or ``None``."""
        rows = self._query(f"SELECT {_COLUMNS} FROM cells WHERE key = ?", (key,))
        return _record(rows[0]) if rows else None

    def find(self, prefix: str) -> CellRecord:
        """The single row whose key starts with ``prefix`` (at least 4 hex digits)."""
        prefix = prefix.strip().lower()
        if len(prefix) < 4 or any(c not in "0123456789abcdef" for c in prefix):
            raise NtkscopeInputError(
                f"key: expected at least 4 hex digits of a cell key, got {prefix!r}"
            )
        rows = self._query(
            f"SELECT {_COLUMNS} FROM cells WHERE key >= ? AND key < ? ORDER BY key LIMIT 2",
            (prefix, prefix + "g"),
        )
        if not rows:
            raise NtkscopeInputError(f"key: no cell in {self.path} has a key starting {prefix!r}")
        if len(rows) > 1:
            raise NtkscopeInputError(f"key: {prefix!r} is ambiguous; give more digits")
        return _record(rows[0])

    def statuses(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """``{key: status}`` for the stored ``keys`` (all rows when ``None``)."""
        if keys is None:
            return dict(self._query("SELECT key, status FROM cells"))
        wanted = set(keys)
        if len(wanted) > 500:  # one scan beats hundreds of lookups
            return {k: s for k, s in self._query("SELECT key, status FROM cells") if k in wanted}
        out: dict[str, str] = {}
        for k in wanted:
            rows = self._query("SELECT status FROM cells WHERE key = ?", (k,))
            if rows:
                out[k] = rows[0][0]
        return out

    def records(self, kind: str | None = None, status: str | None = None) -> Iterator[CellRecord]:
        """All rows (optionally of one kind and/or status), oldest first."""
        if status is not None and status not in STATUSES:
            raise NtkscopeInputError(f"status: expected one of {STATUSES}, got {status!r}")
        clauses, params = [], []
        for column, value in (("kind", kind), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        for row in self._query(f"SELECT {_COLUMNS} FROM cells{where} ORDER BY created, key",
                               params):
            yield _record(row)

    def __len__(self) -> int:
        return int(self._query("SELECT count(*) FROM cells")[0][0])

    def __contains__(self, key: object) -> bool:
        return bool(self._query("SELECT 1 FROM cells WHERE key = ?", (key,)))

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``"ok"`` for a sound file."""
        return "\n".join(r[0] for r in self._query("PRAGMA integrity_check"))


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error); SQLite errors become
    :class:`NtkscopeInputError`."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db, self._path = db, path

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise NtkscopeInputError(f"store: cannot write {self._path}: {exc}") from None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.Error as err:
                self._db.execute("ROLLBACK")
                raise NtkscopeInputError(f"store: cannot write {self._path}: {err}") from None
        self._db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise NtkscopeInputError(f"store: cannot write {self._path}: {exc}") from None


def _check_file(path: Path, create: bool) -> bool:
    """Whether ``path`` exists as a plausible SQLite file; refuse directories and others."""
    if path.is_dir():
        raise NtkscopeInputError(f"store: {path} is a directory, expected a .sqlite file")
    if not path.exists():
        if not create:
            raise NtkscopeInputError(f"store: {path} does not exist")
        if path.parent.exists() and not path.parent.is_dir():
            raise NtkscopeInputError(f"store: {path.parent} is not a directory")
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise NtkscopeInputError(f"store: cannot read {path}: {exc.strerror}") from None
    if not head:  # an empty file (e.g. a creation killed before its first commit)
        return False
    if head != _SQLITE_MAGIC:
        raise NtkscopeInputError(
            f"store: {path} exists but is not an ntkscope results store (not an SQLite "
            "file, or corrupt); refusing to touch it"
        )
    return True


# --------------------------------------------------------------------------------------------
# Flat tables (export)

#: Columns every exported row starts with.
META_COLUMNS = ("key", "kind", "status", "wall_time", "version", "created", "error")
EXPORT_FORMATS = ("csv", "parquet")


def flat_table(records: Iterable[CellRecord]) -> tuple[list[str], list[dict[str, Any]]]:
    """Records as one flat table: :data:`META_COLUMNS`, then config, then summary columns.

    Nested dicts become dotted names (``{"a": {"b": 1}}`` -> ``a.b``), lists become JSON
    text; ``error`` keeps the first line only. A config name clashing with a meta column gets
    a ``config.`` prefix, a summary name clashing with an earlier column ``summary.``.
    Samples are not exported (``ntkscope results show`` prints them).
    """
    rows: list[dict[str, Any]] = []
    config_cols: dict[str, None] = {}
    summary_cols: dict[str, None] = {}
    for rec in records:
        row: dict[str, Any] = {
            "key": rec.key, "kind": rec.kind, "status": rec.status, "wall_time": rec.wall_time,
            "version": rec.version, "created": rec.created,
            "error": None if rec.error is None else rec.error.splitlines()[0],
        }
        for name, value in _flatten(rec.config):
            col = f"config.{name}" if name in META_COLUMNS else name
            config_cols[col] = None
            row[col] = value
        for name, value in _flatten(rec.summary or {}):
            col = f"summary.{name}" if name in META_COLUMNS or name in config_cols else name
            summary_cols[col] = None
            row[col] = value
        rows.append(row)
    columns = [*META_COLUMNS, *config_cols, *(c for c in summary_cols if c not in config_cols)]
    return columns, rows


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, value in data.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{name}.")
        elif isinstance(value, (list, tuple)):
            yield f"{prefix}{name}", json.dumps(value)
        else:
            yield f"{prefix}{name}", value


def export_table(store: Store, path: str | os.PathLike[str], fmt: str,
                 kind: str | None = None) -> int:
    """Write the store's rows (of ``kind``) as CSV or Parquet, atomically; returns the count."""
    from ntkscope.io import atomic_open, check_output_file

    if fmt not in EXPORT_FORMATS:
        raise NtkscopeInputError(f"format: expected one of {EXPORT_FORMATS}, got {fmt!r}")
    target = check_output_file(path, "out")
    columns, rows = flat_table(store.records(kind=kind))
    if fmt == "csv":
        import csv

        with atomic_open(target, "w") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({c: _arrow_column(pa, [r.get(c) for r in rows]) for c in columns})
        with atomic_open(target, "wb") as fh:
            pq.write_table(table, fh)
    return len(rows)


def _arrow_column(pa: Any, values: list[Any]) -> Any:
    """One typed column: bool, int64 or float64 where every value fits, else strings."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.array(values, pa.bool_())
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array(values, pa.int64())
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array([None if v is None else v if isinstance(v, str) else json.dumps(v)
                     for v in values], pa.string())
