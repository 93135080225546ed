"""Reading and verifying idx files (the MNIST file format), plain or gzip-compressed.

An idx file is a big-endian header (magic ``0x0000 08 0D``: unsigned bytes, ``D`` dimensions,
then ``D`` 32-bit sizes) followed by the data. ntkscope reads images (``D = 3``, ``N x 28 x 28``)
and labels (``D = 1``, ``N``). Every check failure raises :class:`NtkscopeInputError` naming the
file: a corrupt gzip stream, a wrong magic number, wrong image size, a truncated or overlong
file, and finally a SHA-256 mismatch of the decompressed content.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path

import numpy as np

from ntkscope.datasets.specs import IMAGE_SETS, IMAGE_SIDE
from ntkscope.validation import NtkscopeInputError

#: Magic numbers of the two idx kinds ntkscope reads.
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def decompress(data: bytes, source: str | os.PathLike[str]) -> bytes:
    """The content of a gzip member, or ``data`` itself when it is not gzip-compressed."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise NtkscopeInputError(f"{source}: corrupt gzip file ({exc})") from None


def sha256(data: bytes) -> str:
    """Hex SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def parse_idx(data: bytes, kind: str, source: str | os.PathLike[str]) -> np.ndarray:
    """Decode decompressed idx content: ``kind="images"`` (``N x 28 x 28``) or ``"labels"`` (``N``).

    Returns:
        a uint8 array (a copy, writable).

    Raises:
        NtkscopeInputError: wrong magic number, wrong image size, truncated or overlong data.
    """
    if kind not in ("images", "labels"):
        raise ValueError(f"kind must be 'images' or 'labels', got {kind!r}")
    ndim = 3 if kind == "images" else 1
    magic = IMAGES_MAGIC if kind == "images" else LABELS_MAGIC
    header = 4 * (ndim + 1)
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found is not None and found != magic:
        raise NtkscopeInputError(
            f"{source}: wrong magic number 0x{found:08x} (an idx {kind} file starts with "
            f"0x{magic:08x})"
        )
    if len(data) < header:
        raise NtkscopeInputError(
            f"{source}: truncated idx file ({len(data)} bytes, shorter than its header)"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if kind == "images" and shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise NtkscopeInputError(
            f"{source}: images of {shape[1]} x {shape[2]} pixels (expected "
            f"{IMAGE_SIDE} x {IMAGE_SIDE})"
        )
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "overlong"
        raise NtkscopeInputError(
            f"{source}: {what} idx file ({len(data)} bytes; the header announces "
            f"{' x '.join(map(str, shape))} entries, {expected} bytes)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def check_sha256(data: bytes, expected: str, source: str | os.PathLike[str]) -> None:
    """Raise :class:`NtkscopeInputError` unless ``sha256(data) == expected``.

    The message says which known file the content is instead, when it is one (for instance
    the MNIST file found where the Fashion-MNIST one was expected).
    """
    digest = sha256(data)
    if digest == expected:
        return
    known = [(spec.title, stem) for spec in IMAGE_SETS.values()
             for stem, value in spec.sha256.items() if value == digest]
    wanted = [spec.title for spec in IMAGE_SETS.values() if expected in spec.sha256.values()]
    if known and wanted:
        title, stem = known[0]
        advice = f": this is the {title} {stem} file" + (
            " under another name" if title == wanted[0] else
            f", not the {wanted[0]} one (keep each data set in its own directory, named "
            "after it)")
    else:
        advice = "; the file is corrupt or not the expected one: delete it and download it again"
    raise NtkscopeInputError(
        f"{source}: checksum mismatch (SHA-256 of the decompressed content is {digest}, "
        f"expected {expected}){advice}"
    )


def read_verified(data: bytes, kind: str, expected_sha256: str,
                  source: str | os.PathLike[str]) -> np.ndarray:
    """Decompress (if gzip), parse and checksum-verify idx content; see :func:`parse_idx`."""
    raw = decompress(data, source)
    array = parse_idx(raw, kind, source)
    check_sha256(raw, expected_sha256, source)
    return array


def read_idx_file(path: str | os.PathLike[str], kind: str, expected_sha256: str) -> np.ndarray:
    """Read and verify one idx file (``.gz`` or not); errors name ``path``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NtkscopeInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return read_verified(data, kind, expected_sha256, path)


def kind_of(stem: str) -> str:
    """``"images"`` or ``"labels"`` from an idx file stem such as ``train-images-idx3-ubyte``."""
    return "images" if "-images-" in stem else "labels"
