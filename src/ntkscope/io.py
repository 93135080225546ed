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


def check_output_file(
    path: str | os.PathLike[str], name: str, suffixes: tuple[str, ...] | None = None
) -> Path:
    """Check an output file name before any work is done, without touching the disk.

    ``path`` must name a file, not a directory, with one of ``suffixes`` (lower case, with
    the dot; ``None``: any), and the nearest existing ancestor of its directory must be a
    writable directory. Missing directories are created only when the file is written
    (:func:`atomic_open`), so a command that fails leaves nothing behind.
    """
    target = Path(path)
    if str(path) == "" or target.name in ("", ".", ".."):
        raise NtkscopeInputError(f"{name}: expected a file name, got {str(path)!r}")
    if suffixes is not None and target.suffix.lower() not in suffixes:
        raise NtkscopeInputError(
            f"{name}: expected a {' or '.join(suffixes)} file name, got {str(path)!r}"
        )
    if target.is_dir():
        raise NtkscopeInputError(f"{name}: {path} is a directory")
    probe = target.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise NtkscopeInputError(f"{name}: {probe} exists and is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise NtkscopeInputError(f"{name}: directory {probe} is not writable")
    return target


def _file_mode(target: Path) -> int:
    """Permissions for ``target``: those of the file it replaces, else ``0o666 & ~umask``
    (``mkstemp`` creates ``0o600`` files, which the rename would otherwise keep)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only on success.

    Missing parent directories are created first.

    On any exception (in the caller's block or while finishing the file) the temporary file
    is removed and an existing ``path`` is left untouched. The file gets the permissions of
    the file it replaces (a new file: ``0o666`` less the umask).

    Raises:
        NtkscopeInputError: the file cannot be created or renamed into place (``OSError``).
    """
    target = Path(path)
    if not target.parent.is_dir():
        ensure_writable_dir(target.parent, str(target))
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise NtkscopeInputError(f"{target}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode(target))
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise NtkscopeInputError(f"{target}: cannot write: {exc.strerror or exc}") from None
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
