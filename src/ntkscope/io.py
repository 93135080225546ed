"""Atomic file output: every file ntkscope writes appears whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ntkscope.validation import NtkscopeInputError


def ensure_writable_dir(path: str | os.PathLike[str], name: str = "out") -> Path:
    """Create ``path`` if needed and check it is a writable directory."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise NtkscopeInputError(f"{name}: {p} exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NtkscopeInputError(f"{name}: cannot create directory {p}: {exc.strerror}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise NtkscopeInputError(f"{name}: directory {p} is not writable")
    return p


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only on success."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_savefig(fig, path: str | os.PathLike[str], **kwargs) -> None:  # type: ignore[no-untyped-def]
    """``fig.savefig`` through :func:`atomic_open` (format taken from the suffix)."""
    target = Path(path)
    fmt = kwargs.pop("format", target.suffix.lstrip(".") or "png")
    with atomic_open(target, "wb") as fh:
        fig.savefig(fh, format=fmt, **kwargs)
