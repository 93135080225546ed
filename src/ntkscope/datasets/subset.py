"""The small subsets shipped as package data, so every command works offline.

Each ``ntkscope/data/<name>-subset.npz`` holds, per split, ``<split>_images`` (uint8
``N x 28 x 28``), ``<split>_labels`` (uint8) and ``<split>_indices`` (uint32, the positions of
the images in the full idx file, ascending). The subset is class-balanced: for each class the
``k`` images whose BLAKE2b hash of ``"<name>:<split>:<index>"`` is smallest, an order that
depends on nothing but the file positions (:func:`subset_indices`). ``scripts/build_subsets.py``
writes the files with :func:`build_subset`; the output is byte-for-byte reproducible.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np

from ntkscope.datasets.files import SplitData, read_split
from ntkscope.datasets.specs import IMAGE_SIDE, SPLITS, ImageSetSpec
from ntkscope.io import atomic_open
from ntkscope.validation import NtkscopeInputError

#: Images per class in the shipped subsets (10 classes: 2,000 train and 1,000 test images).
PER_CLASS: dict[str, int] = {"train": 200, "test": 100}

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamp: reproducible archives


def subset_path(spec: ImageSetSpec) -> Path:
    """Path of the shipped subset file of ``spec`` (inside the installed package)."""
    return Path(str(resources.files("ntkscope") / "data" / spec.subset_file))


def subset_indices(name: str, split: str, labels: np.ndarray, per_class: int) -> np.ndarray:
    """Positions of ``per_class`` images of every class, chosen by a hash order (ascending).

    Raises:
        NtkscopeInputError: a class has fewer than ``per_class`` images.
    """
    keys = np.array([
        int.from_bytes(hashlib.blake2b(f"{name}:{split}:{i}".encode(), digest_size=8).digest(),
                       "big")
        for i in range(len(labels))
    ], dtype=np.uint64)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise NtkscopeInputError(
                f"per_class: class {c} has only {len(members)} {split} images, asked for "
                f"{per_class}"
            )
        chosen.append(members[np.argsort(keys[members], kind="stable")[:per_class]])
    return np.sort(np.concatenate(chosen))


def write_npz(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> None:
    """An ``.npz`` (deflate-compressed) with fixed timestamps, written atomically.

    Unlike :func:`numpy.savez_compressed` the bytes depend on the arrays only.
    """
    with atomic_open(path, "wb") as fh, zipfile.ZipFile(fh, "w") as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def build_subset(spec: ImageSetSpec, source_dir: str | os.PathLike[str],
                 out: str | os.PathLike[str], per_class: dict[str, int] | None = None) -> Path:
    """Write the subset file of ``spec`` from the verified full files in ``source_dir``."""
    per_class = dict(PER_CLASS if per_class is None else per_class)
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        full = read_split(spec, split, Path(source_dir))
        idx = subset_indices(spec.name, split, full.labels, per_class[split])
        arrays[f"{split}_images"] = full.images[idx]
        arrays[f"{split}_labels"] = full.labels[idx]
        arrays[f"{split}_indices"] = idx.astype(np.uint32)
    write_npz(out, arrays)
    return Path(out)


def load_subset(spec: ImageSetSpec, split: str) -> SplitData:
    """The shipped subset of ``split`` (read-only arrays, read once per process).

    Raises:
        NtkscopeInputError: the file is missing or damaged (the message names it).
    """
    if split not in SPLITS:
        raise NtkscopeInputError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    path = subset_path(spec)
    images, labels, indices = _load(spec, path)[split]
    total = spec.sizes[split]
    return SplitData(
        images, labels, indices,
        f"shipped subset {path.name} ({len(labels):,} of the {total:,} {split} images)",
        subset=True,
    )


@functools.lru_cache(maxsize=4)
def _load(spec: ImageSetSpec, path: Path) -> dict[str, tuple[np.ndarray, ...]]:
    out: dict[str, tuple[np.ndarray, ...]] = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for split in SPLITS:
                arrays = tuple(z[f"{split}_{k}"] for k in ("images", "labels", "indices"))
                out[split] = arrays
    except FileNotFoundError:
        raise NtkscopeInputError(
            f"{path}: the shipped {spec.title} subset is missing (a broken installation?)"
        ) from None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise NtkscopeInputError(f"{path}: damaged subset file ({exc})") from None
    for split, (images, labels, indices) in out.items():
        n = len(labels)
        if (images.dtype != np.uint8 or images.shape != (n, IMAGE_SIDE, IMAGE_SIDE)
                or labels.dtype != np.uint8 or indices.shape != (n,) or n == 0
                or int(labels.max()) >= len(spec.class_names)
                or int(indices.max()) >= spec.sizes[split]):
            raise NtkscopeInputError(f"{path}: damaged subset file (bad {split} arrays)")
        indices = indices.astype(np.int64)
        for a in (images, labels, indices):
            a.setflags(write=False)
        out[split] = (images, labels, indices)
    return out
