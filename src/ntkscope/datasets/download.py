"""Downloading the full idx files from the canonical mirrors into the user cache (CIFAR:
:func:`ntkscope.datasets.cifar.download_archive_set`).

Every file is fetched whole into memory, checked (gzip stream, magic number, shape, SHA-256 of
the decompressed content) and only then written, atomically; the mirrors are tried in order
until one gives a verified file. Nothing is written unless all missing files were obtained, so
a failed download leaves the destination as it was.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from ntkscope._version import __version__
from ntkscope.datasets.cifar import ARCHIVE_SETS, download_archive_set
from ntkscope.datasets.files import default_download_dir, find_file
from ntkscope.datasets.idx import kind_of, read_idx_file, read_verified
from ntkscope.datasets.loading import dataset_name
from ntkscope.datasets.specs import IMAGE_SETS, ImageSetSpec
from ntkscope.io import atomic_open, ensure_writable_dir
from ntkscope.validation import NtkscopeInputError

_MAX_BYTES = 200 * 2**20  # no idx file of these data sets comes near this
_SCHEMES = ("http", "https", "file")


def _mirrors(mirrors: Sequence[str]) -> list[str]:
    """Base URLs, each ending in ``/``."""
    if isinstance(mirrors, str):
        mirrors = [mirrors]
    out = []
    for url in mirrors:
        url = str(url).strip()
        if urllib.parse.urlsplit(url).scheme not in _SCHEMES:
            raise NtkscopeInputError(
                f"mirrors: expected an http://, https:// or file:// base URL, got {url!r}"
            )
        out.append(url if url.endswith("/") else url + "/")
    if not out:
        raise NtkscopeInputError("mirrors: no mirror given")
    return out


def _get(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": f"ntkscope/{__version__}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # scheme checked
        data = response.read(_MAX_BYTES + 1)
    if len(data) > _MAX_BYTES:
        raise OSError(f"more than {_MAX_BYTES} bytes")
    return data


def _fetch(spec: ImageSetSpec, stem: str, mirrors: list[str], timeout: float,
           log: Callable[[str], None]) -> bytes:
    """The verified content of ``stem`` from the first mirror that gives it."""
    failures = []
    for base in mirrors:
        url = f"{base}{stem}.gz"
        try:
            data = _get(url, timeout)
            read_verified(data, kind_of(stem), spec.sha256[stem], url)
        except urllib.error.HTTPError as exc:
            failures.append(f"{url}: HTTP {exc.code}")
        except NtkscopeInputError as exc:  # the message starts with the URL
            failures.append(str(exc))
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
        else:
            log(f"{url}: {len(data):,} bytes, verified")
            return data
        log(f"failed: {failures[-1]}")
    raise NtkscopeInputError(
        f"download: no mirror gave a verified {stem} of {spec.title} ({'; '.join(failures)}); "
        "nothing was written"
    )


def download_dataset(name: str, dest: str | os.PathLike[str] | None = None,
                     mirrors: Sequence[str] | None = None, *, timeout: float = 60.0,
                     log: Callable[[str], None] | None = None, progress: bool = False) -> Path:
    """Download the four idx files of ``name`` (``"mnist"`` or ``"fashion-mnist"``), or the
    archive of ``"cifar10"`` / ``"cifar100"``.

    CIFAR: :func:`~ntkscope.datasets.cifar.download_archive_set` (the archive from
    ``mirrors``, whole archive URLs or base URLs, else ``$NTKSCOPE_CIFAR10_URL`` /
    ``$NTKSCOPE_CIFAR100_URL``, else the canonical URL; verified by MD5 and SHA-256, unpacked
    atomically into ``dest/cifar-10-batches-py``; returns that folder).

    Files already in ``dest`` that verify are kept; missing or corrupt ones are fetched from
    ``mirrors`` (default: the data set's canonical mirrors, tried in order), verified against
    the known SHA-256 checksums and written atomically as ``<stem>.gz``. All or nothing: when a
    file cannot be obtained from any mirror nothing is written.

    Args:
        name: the data set.
        dest: target directory (default ``<user cache>/<name>``, the place the loaders search).
        mirrors: base URLs (``http``, ``https`` or ``file``); ``<base><stem>.gz`` is fetched.
        timeout: seconds per connection attempt.
        log: called with one line per step (default: silent).
        progress: a progress bar for the CIFAR archive (on stderr).

    Returns:
        the directory holding the four verified files.

    Raises:
        NtkscopeInputError: unknown or synthetic data set, bad mirrors, or a file that no
            mirror supplied intact (the message lists each mirror's failure).
    """
    key = dataset_name(name)
    if key in ARCHIVE_SETS:
        return download_archive_set(ARCHIVE_SETS[key], dest, mirrors, timeout=timeout, log=log,
                                    progress=progress)
    if key not in IMAGE_SETS:
        raise NtkscopeInputError(f"name: the {key} data set is synthetic; nothing to download")
    spec = IMAGE_SETS[key]
    say = log or (lambda _line: None)
    target = default_download_dir(spec) if dest is None else Path(dest).expanduser()
    if target.exists() and not target.is_dir():
        raise NtkscopeInputError(f"dest: {target} exists and is not a directory")
    bases = _mirrors(spec.mirrors if mirrors is None else mirrors)
    fetched: dict[str, bytes] = {}
    stale: list[Path] = []
    for stem in spec.files:
        existing = find_file(target, stem)
        if existing is not None:
            try:
                read_idx_file(existing, kind_of(stem), spec.sha256[stem])
            except NtkscopeInputError as exc:
                say(f"{exc}; fetching it again")
                stale.append(existing)
            else:
                say(f"{existing}: present, verified")
                continue
        fetched[stem] = _fetch(spec, stem, bases, timeout, say)
    if fetched:
        ensure_writable_dir(target, "dest")
    written = set()
    for stem, data in fetched.items():
        path = target / (f"{stem}.gz" if data[:2] == b"\x1f\x8b" else stem)
        with atomic_open(path, "wb") as fh:
            fh.write(data)
        written.add(path)
        say(f"wrote {path}")
    for path in stale:
        if path not in written:
            path.unlink(missing_ok=True)  # a corrupt twin that would shadow the new file
    return target


def download_mnist(dest: str | os.PathLike[str] | None = None,
                   mirrors: Sequence[str] | None = None, *, timeout: float = 60.0,
                   log: Callable[[str], None] | None = None) -> Path:
    """:func:`download_dataset` for MNIST (default mirrors: ``IMAGE_SETS["mnist"].mirrors``)."""
    return download_dataset("mnist", dest, mirrors, timeout=timeout, log=log)
