"""Where the full idx files of an image data set are found, and reading one split from them.

Search order (the first directory holding any file of the split wins; its files must then all be
present and verify):

1. ``data_dir`` (``--data-dir``), when given: ``data_dir/<name>/`` if it exists, else
   ``data_dir`` itself. Nothing found there is an error (no silent fallback).
2. the ``NTKSCOPE_DATA`` environment variable, read the same way;
3. the user cache directory, ``<cache>/<name>/`` (see :func:`user_cache_dir`), where
   :func:`~ntkscope.datasets.download.download_dataset` writes;
4. directories of operating-system packages (Debian's ``dataset-fashion-mnist`` installs
   ``/usr/share/datasets/fashion-mnist/``).

When none holds the files, :mod:`ntkscope.datasets.subset` supplies the shipped subset.
Each file may be plain (``train-images-idx3-ubyte``) or gzip-compressed (``...-ubyte.gz``);
the plain one is preferred when both exist.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ntkscope.datasets.idx import kind_of, read_idx_file
from ntkscope.datasets.specs import SPLIT_FILES, SPLITS, ImageSetSpec
from ntkscope.validation import NtkscopeInputError

#: Environment variable naming a directory with the full data files.
DATA_ENV = "NTKSCOPE_DATA"


def user_cache_dir() -> Path:
    """ntkscope's per-user cache directory.

    ``$XDG_CACHE_HOME/ntkscope`` (default ``~/.cache/ntkscope``) on Linux and other Unix
    systems, ``~/Library/Caches/ntkscope`` on macOS, ``%LOCALAPPDATA%\\ntkscope`` on Windows.
    """
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Caches")
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = xdg if os.path.isabs(xdg) else str(Path.home() / ".cache")
    return Path(base) / "ntkscope"


def default_download_dir(spec: ImageSetSpec) -> Path:
    """``<user cache>/<name>``: where downloads go and the third place searched."""
    return user_cache_dir() / spec.name


def find_file(directory: Path, stem: str) -> Path | None:
    """``directory/stem`` or ``directory/stem.gz`` (plain preferred), or ``None``."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _holding(directory: Path, spec: ImageSetSpec, split: str) -> Path | None:
    """``directory/<name>`` or ``directory``, whichever first holds a file of ``split``."""
    for candidate in (directory / spec.name, directory):
        if any(find_file(candidate, stem) for stem in SPLIT_FILES[split]):
            return candidate
    return None


def env_roots() -> list[Path]:
    """``[$NTKSCOPE_DATA]`` as a directory, or ``[]`` when it is unset (an existing value that
    is not a directory is an error)."""
    env = os.environ.get(DATA_ENV, "").strip()
    if not env:
        return []
    root = Path(env).expanduser()
    if not root.is_dir():
        raise NtkscopeInputError(f"{DATA_ENV}: {root} is not a directory")
    return [root]


def locate(spec: ImageSetSpec, split: str, data_dir: str | os.PathLike[str] | None = None,
           ) -> Path | None:
    """The directory holding the full files of ``split``, or ``None`` (use the subset).

    Raises:
        NtkscopeInputError: ``data_dir`` is given but is not a directory or holds no file of
            the split; ``NTKSCOPE_DATA`` names something that is not a directory.
    """
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise NtkscopeInputError(f"data_dir: {root} is not a directory")
        found = _holding(root, spec, split)
        if found is None:
            raise NtkscopeInputError(
                f"data_dir: no {spec.title} {split} files in {root} or {root / spec.name} "
                f"(expected {' and '.join(f'{s}[.gz]' for s in SPLIT_FILES[split])})"
            )
        return found
    roots: list[Path] = env_roots()
    roots.append(default_download_dir(spec))
    roots.extend(Path(d) for d in spec.system_dirs)
    for root in roots:
        if root.is_dir() and (found := _holding(root, spec, split)) is not None:
            return found
    return None


@dataclass(frozen=True)
class SplitData:
    """One split of an image data set: ``images`` (``N x 28 x 28`` uint8), ``labels`` (``N``
    uint8), ``indices`` (each image's position in the full split) and where they came from."""

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    source: str
    subset: bool


def read_split(spec: ImageSetSpec, split: str, directory: Path) -> SplitData:
    """Read and verify the images and labels of ``split`` from ``directory`` (cached in memory).

    Raises:
        NtkscopeInputError: a file is missing or corrupt (the message names it), or the label
            count differs from the image count.
    """
    if split not in SPLITS:
        raise NtkscopeInputError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    paths = []
    for stem in SPLIT_FILES[split]:
        path = find_file(directory, stem)
        if path is None:
            raise NtkscopeInputError(
                f"{directory / stem}[.gz]: missing (the {spec.title} {split} split needs "
                f"{' and '.join(SPLIT_FILES[split])} in {directory})"
            )
        paths.append(path.absolute())
    stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    images, labels = _read_pair(spec, paths[0], paths[1], stamp)
    return SplitData(images, labels, np.arange(len(labels)), f"full files in {directory}",
                     subset=False)


@functools.lru_cache(maxsize=4)
def _read_pair(spec: ImageSetSpec, images_path: Path, labels_path: Path,
               stamp: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels, verified; read-only arrays. ``stamp`` (mtime, size) keys the cache."""
    del stamp  # part of the cache key only: a rewritten file is read again
    stems = [p.name.removesuffix(".gz") for p in (images_path, labels_path)]
    images = read_idx_file(images_path, kind_of(stems[0]), spec.sha256[stems[0]])
    labels = read_idx_file(labels_path, kind_of(stems[1]), spec.sha256[stems[1]])
    if len(labels) != len(images):
        raise NtkscopeInputError(
            f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}"
        )
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels
