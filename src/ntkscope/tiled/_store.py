"""The zarr layout of a tiled kernel store and reading it back (``docs/kernel.md``).

A store is a zarr (v2) group, a local or shared directory or an fsspec URL, holding

* ``x``: the inputs ``(N1 + N2, *shape)`` in the kernel's dtype (``X1`` then ``X2``; for a
  symmetric kernel ``N2 = 0``), chunked by tile rows: workers read their blocks from here;
* ``kernel``: ``(N1, N2)`` (``output="trace"``; ``(N1, N1)`` when ``X2 = X1``) or ``(N1,)``
  (``"diagonal"``), chunks ``(tile, tile)`` / ``(tile,)``, so every tile is one chunk and no
  two writers share a chunk; unwritten entries read as NaN. A symmetric kernel's tasks are
  its upper-triangle tiles ``i <= j``; each writes its chunk and the transposed chunk
  ``(j, i)``, so the array *is* the full matrix (readable by any zarr or Dask client);
* ``done``: ``(R, C)`` uint64, one chunk per tile: the tile's checksum (the first 8 bytes of
  the SHA-256 of its chunk's bytes, never 0), written *after* the kernel chunk(s). A tile is
  done when its marker exists, so a run killed at any moment (SIGKILL) leaves only complete
  tiles marked, and a rerun computes exactly the unmarked ones.

The group's attributes (:data:`IDENTITY` and bookkeeping) say what the kernel is; a rerun with
other values of :data:`IDENTITY` is refused before anything is written.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import itertools
import math
import os
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ntkscope.validation import NtkscopeInputError

#: Bump when the layout or the meaning of the stored values changes.
FORMAT = 1
#: The attributes that define the kernel: a rerun must match every one of them.
IDENTITY = ("format", "parameters", "inputs", "dataset", "samples", "x2_samples", "seed",
            "data_seed", "input_shape", "output", "dtype", "tile", "shape", "symmetric")
_PENDING = "pending"
#: Tiles read ahead by threads while a reduction works on the current one.
PREFETCH = 4


def _zarr() -> Any:
    try:
        import zarr
    except ImportError:  # pragma: no cover - a dependency
        raise NtkscopeInputError("tiled kernels need zarr: pip install 'zarr>=2.18,<3'"
                                 ) from None
    return zarr


def _store(path: str | os.PathLike[str]) -> Any:
    """The zarr store of ``path``: a directory (atomic chunk writes) or an fsspec URL."""
    zarr = _zarr()
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise NtkscopeInputError(f"out: expected a path or URL, got {path!r}")
    if "://" in text and not text.startswith("file://"):
        return zarr.storage.FSStore(text)
    return zarr.storage.DirectoryStore(os.path.expanduser(text.removeprefix("file://")))


def checksum(block: np.ndarray) -> int:
    """A tile's marker: the first 8 bytes of ``sha256(block bytes)`` as an integer ``!= 0``."""
    digest = hashlib.sha256(np.ascontiguousarray(block).tobytes()).digest()
    return int.from_bytes(digest[:8], "little") or 1


def tile_grid(output: str, n1: int, n2: int, tile: int, symmetric: bool
              ) -> list[tuple[int, int]]:
    """The tiles a kernel is computed as: ``(i, j)`` with ``i <= j`` (symmetric), all ``(i,
    j)`` (``X2`` given) or ``(i, 0)`` (``"diagonal"``), row-major."""
    rows = math.ceil(n1 / tile)
    if output == "diagonal":
        return [(i, 0) for i in range(rows)]
    cols = math.ceil(n2 / tile)
    return [(i, j) for i in range(rows) for j in range(cols) if not symmetric or i <= j]


def _located(path: str | os.PathLike[str]) -> str:
    text = os.fspath(path)
    if "://" in text and not text.startswith("file://"):
        return text
    return os.path.abspath(os.path.expanduser(text.removeprefix("file://")))


@dataclass(frozen=True, eq=False)
class KernelStore:
    """An opened kernel store (:func:`open_kernel`): its attributes and arrays, tile access.

    Attributes:
        path: the store's absolute path or URL.
        attrs: the group's attributes (model, parameters fingerprint, data selection, seed,
            output, dtype, tile, shape, symmetric, version, ...).
    """

    path: str
    attrs: Mapping[str, Any]
    group: Any = field(repr=False)

    # -- geometry ----------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        """``(N1, N2)`` or ``(N1,)``."""
        return tuple(int(v) for v in self.attrs["shape"])

    @property
    def tile(self) -> int:
        """Tile side ``t`` (samples)."""
        return int(self.attrs["tile"])

    @property
    def output(self) -> str:
        """``"trace"`` or ``"diagonal"``."""
        return str(self.attrs["output"])

    @property
    def symmetric(self) -> bool:
        """``X2 = X1`` (only the upper-triangle tiles are tasks)."""
        return bool(self.attrs["symmetric"])

    @property
    def kernel(self) -> Any:
        """The zarr array of the kernel (entries of missing tiles read as NaN)."""
        return self.group["kernel"]

    def tiles(self) -> list[tuple[int, int]]:
        """Every tile task of the kernel (:func:`tile_grid`)."""
        n2 = self.shape[1] if len(self.shape) == 2 else 0
        return tile_grid(self.output, self.shape[0], n2, self.tile, self.symmetric)

    def rows(self, i: int) -> slice:
        """Samples of tile row ``i``."""
        return slice(i * self.tile, min((i + 1) * self.tile, self.shape[0]))

    def cols(self, j: int) -> slice:
        """Samples of tile column ``j``."""
        return slice(j * self.tile, min((j + 1) * self.tile, self.shape[-1]))

    # -- completion --------------------------------------------------------------------------

    def done(self) -> dict[tuple[int, int], None]:
        """The tiles whose marker exists (read from the listing, not the values)."""
        out: dict[tuple[int, int], None] = {}
        for key in self.group.store.listdir("done"):
            parts = key.split(".")
            if len(parts) == 2 and all(p.isdigit() for p in parts):
                out[(int(parts[0]), int(parts[1]))] = None
        return out

    def missing(self) -> list[tuple[int, int]]:
        """The tiles not done, in grid order."""
        done = self.done()
        return [t for t in self.tiles() if t not in done]

    @property
    def complete(self) -> bool:
        """Every tile done."""
        return not self.missing()

    def require_complete(self, what: str) -> None:
        """Refuse (:class:`NtkscopeInputError`) a store with missing tiles."""
        missing = self.missing()
        if missing:
            raise NtkscopeInputError(
                f"{what}: {self.path} has {len(missing)} of {len(self.tiles())} tiles missing "
                f"(first {missing[0]}); rerun `ntkscope kernel` with the same arguments to "
                "finish it")

    def verify(self) -> list[tuple[int, int]]:
        """Tiles whose stored chunk no longer matches its checksum (reads every done tile)."""
        marks = self.group["done"]
        bad = []
        for i, j in self.done():
            if checksum(self.block(i, j)) != int(marks[i, j]):
                bad.append((i, j))
        return bad

    # -- reading -----------------------------------------------------------------------------

    def block(self, i: int, j: int) -> np.ndarray:
        """Tile ``(i, j)`` as stored: ``K[rows_i, cols_j]`` (``"diagonal"``: ``K[rows_i]``)."""
        if self.output == "diagonal":
            return self.kernel[self.rows(i)]
        return self.kernel[self.rows(i), self.cols(j)]

    def blocks(self, prefetch: int = PREFETCH) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(i, j, tile)`` for every tile task (upper triangle only when symmetric), in grid
        order; the next ``prefetch`` tiles are read by threads while the caller works."""
        tiles = iter(self.tiles())
        with cf.ThreadPoolExecutor(max(1, prefetch)) as pool:
            ahead: deque[tuple[tuple[int, int], cf.Future]] = deque()
            for t in itertools.islice(tiles, max(1, prefetch)):
                ahead.append((t, pool.submit(self.block, *t)))
            while ahead:
                (i, j), fut = ahead.popleft()
                nxt = next(tiles, None)
                if nxt is not None:
                    ahead.append((nxt, pool.submit(self.block, *nxt)))
                yield i, j, fut.result()

    def load(self) -> np.ndarray:
        """The whole kernel as a NumPy array (refused while tiles are missing)."""
        self.require_complete("load")
        return self.kernel[...]

    def inputs(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``(X1, X2)`` as stored (``X2`` None for a symmetric kernel)."""
        x = self.group["x"]
        n1 = self.shape[0]
        return x[:n1], None if self.symmetric or self.output == "diagonal" else x[n1:]


def open_kernel(path: str | os.PathLike[str]) -> KernelStore:
    """Open the kernel store at ``path`` (a directory or an fsspec URL) for reading.

    Raises:
        NtkscopeInputError: nothing at ``path``, or not a (finished-initializing) ntkscope
            kernel store.
    """
    zarr = _zarr()
    store = _store(path)
    where = _located(path)
    if not zarr.storage.contains_group(store):
        raise NtkscopeInputError(f"kernel: no kernel store at {where}")
    group = zarr.open_group(store, mode="r+")
    attrs = dict(group.attrs)
    if attrs.get("ntkscope_kernel") != FORMAT:
        what = "is still being created" if attrs.get("ntkscope_kernel") == _PENDING else \
            "is not an ntkscope kernel store"
        raise NtkscopeInputError(f"kernel: {where} {what}")
    return KernelStore(where, attrs, group)


def create_or_resume(path: str | os.PathLike[str], identity: Mapping[str, Any],
                     info: Mapping[str, Any], x: np.ndarray, chunks_x: int) -> KernelStore:
    """The store at ``path`` for the kernel of ``identity``: created (arrays, inputs, then the
    attributes, last) or, when it exists, checked to be that kernel.

    Raises:
        NtkscopeInputError: the store holds another kernel (the message lists the attributes
            that differ; nothing is written), or ``path`` holds something else.
    """
    zarr = _zarr()
    store = _store(path)
    where = _located(path)
    if zarr.storage.contains_group(store):
        group = zarr.open_group(store, mode="r+")
        state = group.attrs.get("ntkscope_kernel")
        if state == FORMAT:
            found = dict(group.attrs)
            diff = [k for k in IDENTITY if _canon(found.get(k)) != _canon(identity.get(k))]
            if diff:
                shown = "; ".join(f"{k}: stored {_short(found.get(k))}, now "
                                  f"{_short(identity.get(k))}" for k in diff)
                raise NtkscopeInputError(
                    f"out: {where} holds another kernel ({shown}); nothing was overwritten: "
                    "use another --out, or the arguments it was made with")
            return KernelStore(where, found, group)
        if state != _PENDING:
            raise NtkscopeInputError(f"out: {where} is a zarr group but not an ntkscope "
                                     "kernel store; refusing to write into it")
    elif _nonempty(store):
        raise NtkscopeInputError(f"out: {where} exists and is not an ntkscope kernel store; "
                                 "refusing to write into it")
    # Fresh (or an earlier creation killed before its attributes): (re)create everything.
    group = zarr.open_group(store, mode="w")
    group.attrs["ntkscope_kernel"] = _PENDING
    dtype = np.dtype(identity["dtype"])
    shape = tuple(identity["shape"])
    tile = int(identity["tile"])
    xs = group.create_dataset("x", shape=x.shape, dtype=dtype,
                              chunks=(chunks_x, *x.shape[1:]), overwrite=True)
    xs[...] = x.astype(dtype)
    group.create_dataset("kernel", shape=shape, dtype=dtype, chunks=(tile,) * len(shape),
                         fill_value=np.nan, overwrite=True)
    grid = (math.ceil(shape[0] / tile), 1 if len(shape) == 1 else math.ceil(shape[1] / tile))
    group.create_dataset("done", shape=grid, dtype=np.uint64, chunks=(1, 1), fill_value=0,
                         overwrite=True)
    attrs = {**identity, **info, "ntkscope_kernel": FORMAT}
    group.attrs.put(attrs)  # last: from here on the store is this kernel's
    return KernelStore(where, attrs, group)


def _nonempty(store: Any) -> bool:
    try:
        return any(True for _ in store.keys())
    except (FileNotFoundError, OSError):
        return False


def _canon(value: Any) -> Any:
    """Tuples and lists compare equal (JSON round trip)."""
    if isinstance(value, (tuple, list)):
        return [_canon(v) for v in value]
    return value


def _short(value: Any) -> str:
    text = repr(_canon(value))
    return text if len(text) <= 24 else text[:12] + "..." + text[-6:]
