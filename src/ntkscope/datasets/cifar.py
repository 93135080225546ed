"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009): the python-version archives, verified and unpickled
safely.

Each archive (``cifar-10-python.tar.gz``, ``cifar-100-python.tar.gz``) holds a folder
(``cifar-10-batches-py/``, ``cifar-100-python/``) of pickled dictionaries written by Python 2
(protocol 2): ``b"data"``, a ``10000 x 3072`` uint8 array, one image per row, row-major and
channel-first (1024 red, 1024 green, 1024 blue values of the 32 x 32 image), and the labels
(``b"labels"``; CIFAR-100: ``b"fine_labels"``, the 100 classes). CIFAR-10 has five training
batches ``data_batch_1..5`` and ``test_batch``; CIFAR-100 one ``train`` and one ``test``.

Safety: an archive is used only after its MD5 (as published) and SHA-256 match, an unpacked
file only after its MD5 matches, and the pickles are read by :class:`BatchUnpickler`, which
builds nothing but dictionaries, lists, strings, numbers and uint8 arrays (a pickle naming any
other callable, ``os.system`` for one, is refused). Archives are unpacked by hand, never with
``extractall``: only regular files and folders inside the data set's folder, no absolute
paths, no ``..``, no links; into a temporary folder beside the target that is renamed into
place once every file verified, so the cache never holds a half-unpacked data set.

Where the files are found (:func:`locate_archive_set`): ``data_dir`` (``--data-dir``), else
``$NTKSCOPE_DATA``, else the user cache ``<cache>/ntkscope/<name>/``; in each, the unpacked
folder (in ``<root>/<name>/`` or ``<root>/``, or ``<root>`` itself) or the archive (read in
memory, not unpacked). No subset ships with ntkscope: without the files the loader says how to
get them (:func:`download_archive_set`).
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import numpy as np

from ntkscope.datasets.files import DATA_ENV, SplitData, env_roots, user_cache_dir
from ntkscope.validation import NtkscopeInputError

__all__ = ["ARCHIVE_SETS", "CIFAR10", "CIFAR100", "ArchiveSetSpec", "BatchUnpickler",
           "download_archive_set", "locate_archive_set", "read_archive_split"]

#: Shape of one CIFAR image, channel-first: ``M0 = 3 * 32 * 32 = 3072``.
IMAGE_SHAPE: tuple[int, int, int] = (3, 32, 32)
_PIXELS = int(np.prod(IMAGE_SHAPE))
_CHUNK = 2**20


@dataclass(frozen=True, eq=False)  # hashed by identity: a cache key
class ArchiveSetSpec:
    """One data set published as a python-version archive of pickled batches (CIFAR layout).

    Attributes:
        name: the name ``load_dataset`` accepts (``"cifar10"``).
        title: the name people write (``"CIFAR-10"``).
        archive: the archive's file name (``"cifar-10-python.tar.gz"``).
        folder: the folder inside the archive (``"cifar-10-batches-py"``).
        md5: the archive's MD5, as published on the data set's page.
        sha256: the archive's SHA-256 (``None``: not checked).
        archive_bytes: the archive's size in bytes (``None``: not checked).
        urls: where the archive is downloaded from, tried in order.
        members: the batch files of each split, in order (their rows, concatenated, are the
            split's images ``0..N-1``).
        member_md5: the MD5 of each unpacked file, by file name.
        label_key: the key of the labels in a batch (``b"labels"``, ``b"fine_labels"``).
        sizes: number of images per split.
        class_names: one name per label.
        citation: who made the data set.
    """

    name: str
    title: str
    archive: str
    folder: str
    md5: str
    sha256: str | None
    archive_bytes: int | None
    urls: tuple[str, ...]
    members: dict[str, tuple[str, ...]]
    member_md5: dict[str, str]
    label_key: bytes
    sizes: dict[str, int]
    class_names: tuple[str, ...]
    citation: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(3, 32, 32)``."""
        return IMAGE_SHAPE

    @property
    def url_env(self) -> str:
        """The environment variable that replaces :attr:`urls` (``NTKSCOPE_CIFAR10_URL``)."""
        return f"NTKSCOPE_{self.name.upper().replace('-', '_')}_URL"


_CITATION = ("A. Krizhevsky, Learning Multiple Layers of Features from Tiny Images, technical "
             "report, University of Toronto (2009), https://www.cs.toronto.edu/~kriz/cifar.html")

CIFAR10 = ArchiveSetSpec(
    name="cifar10",
    title="CIFAR-10",
    archive="cifar-10-python.tar.gz",
    folder="cifar-10-batches-py",
    md5="c58f30108f718f92721af3b95e74349a",
    sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    archive_bytes=170_498_071,
    urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    members={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    member_md5={
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    label_key=b"labels",
    sizes={"train": 50_000, "test": 10_000},
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"),
    citation=_CITATION,
)

CIFAR100 = ArchiveSetSpec(
    name="cifar100",
    title="CIFAR-100",
    archive="cifar-100-python.tar.gz",
    folder="cifar-100-python",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
    archive_bytes=169_001_437,
    urls=("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
    members={"train": ("train",), "test": ("test",)},
    member_md5={
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
    label_key=b"fine_labels",
    sizes={"train": 50_000, "test": 10_000},
    class_names=tuple(
        "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
        "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach "
        "couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster "
        "house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree "
        "motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear "
        "pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road "
        "rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel "
        "streetcar sunflower sweet_pepper table tank telephone television tiger tractor train "
        "trout tulip turtle wardrobe whale willow_tree wolf woman worm".split()),
    citation=_CITATION,
)

#: The archive data sets, by name.
ARCHIVE_SETS: dict[str, ArchiveSetSpec] = {s.name: s for s in (CIFAR10, CIFAR100)}


# Safe unpickling ----------------------------------------------------------------------------

_RECONSTRUCT = np.zeros(1, np.uint8).__reduce__()[0]  # numpy's array-unpickling function


def _reconstruct(cls: object, shape: object, typecode: object) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct`` for plain ``ndarray`` only."""
    if cls is not np.ndarray:
        raise pickle.UnpicklingError("only plain numpy arrays may be built")
    return _RECONSTRUCT(np.ndarray, shape, typecode)


def _dtype(obj: object, align: object = False, copy: object = False) -> np.dtype:
    """``numpy.dtype`` for unsigned bytes only (the one dtype of the CIFAR batches)."""
    if obj not in ("u1", b"u1"):
        raise pickle.UnpicklingError(f"only uint8 arrays may be built, not dtype {obj!r}")
    return np.dtype("u1", align=bool(align), copy=bool(copy))


class BatchUnpickler(pickle.Unpickler):
    """An unpickler for the CIFAR batches that builds only plain data.

    Dictionaries, lists, tuples, strings, bytes and numbers come from the pickle opcodes
    themselves; the only globals it resolves are numpy's array reconstruction, restricted to
    plain ``uint8`` arrays (``numpy.core.multiarray._reconstruct`` / ``numpy._core...``,
    ``numpy.ndarray``, ``numpy.dtype("u1")``). Anything else (``os.system``,
    ``builtins.eval``, persistent ids, object arrays) raises ``pickle.UnpicklingError``.
    Python 2 strings load as ``bytes`` (``encoding="bytes"``), as in the original files.
    """

    _ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _dtype,
    }

    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file, encoding="bytes")

    def find_class(self, module: str, name: str) -> Any:
        """The allowed global ``module.name``; any other is refused."""
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load {module}.{name} (a CIFAR batch holds only data)") from None

    def persistent_load(self, pid: object) -> Any:
        """Refused: the batches hold no persistent ids."""
        raise pickle.UnpicklingError("refused a persistent id (a CIFAR batch holds only data)")


def _get(batch: dict, key: bytes) -> Any:
    for k in (key, key.decode()):
        if k in batch:
            return batch[k]
    raise KeyError(key)


def parse_batch(spec: ArchiveSetSpec, raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 3, 32, 32)`` uint8 and labels ``(n,)`` uint8 of one pickled batch.

    Raises:
        NtkscopeInputError: not a pickle, a pickle that builds anything but plain data
            (:class:`BatchUnpickler`), or not a batch: no ``data`` / labels, data that is not
            an ``n x 3072`` uint8 array, ``n`` labels that are not integers ``0..C-1``.
    """
    try:
        batch = BatchUnpickler(io.BytesIO(raw)).load()
    except pickle.UnpicklingError as exc:
        raise NtkscopeInputError(f"{source}: unsafe or broken pickle: {exc}") from None
    except Exception as exc:  # truncated or garbled pickles raise many types
        raise NtkscopeInputError(
            f"{source}: not a CIFAR batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise NtkscopeInputError(f"{source}: not a CIFAR batch (a {type(batch).__name__}, not "
                                 "a dictionary)")
    try:
        data, labels = _get(batch, b"data"), _get(batch, spec.label_key)
    except KeyError as exc:
        raise NtkscopeInputError(f"{source}: not a {spec.title} batch (no {exc.args[0]!r})"
                                 ) from None
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != _PIXELS):
        what = (f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise NtkscopeInputError(f"{source}: 'data' must be an n x {_PIXELS} uint8 array, "
                                 f"got {what}")
    classes = len(spec.class_names)
    if (not isinstance(labels, (list, tuple)) or len(labels) != len(data)
            or not all(type(v) is int and 0 <= v < classes for v in labels)):
        raise NtkscopeInputError(f"{source}: expected {len(data)} labels, integers 0-"
                                 f"{classes - 1}, one per image")
    images = np.ascontiguousarray(data).reshape(len(data), *IMAGE_SHAPE)
    return images, np.asarray(labels, dtype=np.uint8)


# Locating and reading ------------------------------------------------------------------------

def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _holding(root: Path, spec: ArchiveSetSpec) -> Path | None:
    """The unpacked folder or the archive under ``root`` (folders first), or ``None``."""
    for base in (root / spec.name, root):
        if (base / spec.folder).is_dir():
            return base / spec.folder
    if (root / spec.members["train"][0]).is_file() or (root / spec.members["test"][0]).is_file():
        return root  # data_dir names the unpacked folder itself
    for base in (root / spec.name, root):
        if (base / spec.archive).is_file():
            return base / spec.archive
    return None


def default_dir(spec: ArchiveSetSpec) -> Path:
    """``<user cache>/<name>``: where downloads are unpacked, searched last."""
    return user_cache_dir() / spec.name


def locate_archive_set(spec: ArchiveSetSpec, data_dir: str | os.PathLike[str] | None = None
                       ) -> Path | None:
    """The unpacked folder or the archive of ``spec`` (module docstring's order), or ``None``.

    Raises:
        NtkscopeInputError: ``data_dir`` is not a directory or holds neither;
            ``NTKSCOPE_DATA`` is not a directory.
    """
    expected = f"{spec.archive} or its unpacked {spec.folder}/"
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise NtkscopeInputError(f"data_dir: {root} is not a directory")
        found = _holding(root, spec)
        if found is None:
            raise NtkscopeInputError(f"data_dir: no {spec.title} in {root} or "
                                     f"{root / spec.name} (expected {expected})")
        return found
    roots = env_roots()
    roots.append(default_dir(spec))
    for root in roots:
        if root.is_dir() and (found := _holding(root, spec)) is not None:
            return found
    return None


def not_found_message(spec: ArchiveSetSpec) -> str:
    """What to do when :func:`locate_archive_set` found nothing."""
    size = f" ({spec.archive_bytes / 1e6:.0f} MB)" if spec.archive_bytes else ""
    return (f"dataset: {spec.title} not found; run `ntkscope data download {spec.name}`"
            f"{size}, or pass --data-dir DIR (or set {DATA_ENV}) holding {spec.archive} or "
            f"its unpacked {spec.folder}/ (ntkscope ships no {spec.title} subset)")


def _verify_archive(spec: ArchiveSetSpec, md5: str, sha256: str, size: int, source: str
                    ) -> None:
    if spec.archive_bytes is not None and size != spec.archive_bytes:
        raise NtkscopeInputError(f"{source}: {size:,} bytes, the {spec.title} archive has "
                                 f"{spec.archive_bytes:,} (truncated or not the archive)")
    if md5 != spec.md5 or (spec.sha256 is not None and sha256 != spec.sha256):
        raise NtkscopeInputError(f"{source}: checksum mismatch (MD5 {md5}, expected "
                                 f"{spec.md5}): a corrupt or different file")


def _safe_name(spec: ArchiveSetSpec, member: tarfile.TarInfo, source: str) -> PurePosixPath:
    """The member's path inside the archive, refused unless it is a plain file or folder
    strictly inside ``spec.folder``."""
    path = PurePosixPath(member.name)
    if (not path.parts or member.name.startswith(("/", "\\")) or path.is_absolute()
            or ".." in path.parts
            or "\\" in member.name or ":" in path.parts[0]):
        raise NtkscopeInputError(f"{source}: unsafe member path {member.name!r} (absolute or "
                                 "with '..'): refused")
    if not (member.isfile() or member.isdir()):
        raise NtkscopeInputError(f"{source}: member {member.name!r} is a link or device: "
                                 "refused")
    if path.parts[:1] != (spec.folder,):
        raise NtkscopeInputError(f"{source}: member {member.name!r} lies outside "
                                 f"{spec.folder}/: refused")
    return path


def _archive_members(spec: ArchiveSetSpec, fileobj: io.BufferedIOBase, source: str,
                     wanted: Callable[[str], bool]) -> dict[str, bytes]:
    """The contents of the archive's files whose base name ``wanted`` accepts, every member
    checked by :func:`_safe_name`."""
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=fileobj, mode="r:gz") as tar:
            for member in tar:
                path = _safe_name(spec, member, source)
                if member.isfile() and len(path.parts) == 2 and wanted(path.name):
                    fh = tar.extractfile(member)
                    assert fh is not None  # a regular file
                    out[path.name] = fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise NtkscopeInputError(f"{source}: not a readable tar.gz archive ({exc})") from None
    return out


def _check_member(spec: ArchiveSetSpec, name: str, raw: bytes, source: str) -> None:
    expected = spec.member_md5.get(name)
    if expected is not None and _md5(raw) != expected:
        raise NtkscopeInputError(f"{source}: checksum mismatch (MD5 {_md5(raw)}, expected "
                                 f"{expected}): a corrupt or different file")


@functools.lru_cache(maxsize=2)
def _read(spec: ArchiveSetSpec, path: Path, split: str, stamp: tuple[tuple[int, int], ...]
          ) -> tuple[np.ndarray, np.ndarray]:
    """Verified images and labels of ``split`` from the folder or archive ``path``
    (read-only arrays; ``stamp``, the files' (mtime, size), keys the cache)."""
    del stamp
    names = spec.members[split]
    if path.is_dir():
        raws = {}
        for name in names:
            member = path / name
            if not member.is_file():
                raise NtkscopeInputError(f"{member}: missing (the {spec.title} {split} split "
                                         f"needs {', '.join(names)} in {path})")
            raws[name] = member.read_bytes()
            _check_member(spec, name, raws[name], str(member))
    else:
        data = path.read_bytes()
        _verify_archive(spec, _md5(data), hashlib.sha256(data).hexdigest(), len(data),
                        str(path))
        raws = _archive_members(spec, io.BytesIO(data), str(path), names.__contains__)
        missing = [n for n in names if n not in raws]
        if missing:
            raise NtkscopeInputError(f"{path}: no {spec.folder}/{missing[0]} in the archive")
    parts = [parse_batch(spec, raws[n], str(path / n if path.is_dir() else f"{path}:{n}"))
             for n in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def read_archive_split(spec: ArchiveSetSpec, split: str,
                       data_dir: str | os.PathLike[str] | None = None) -> SplitData:
    """The verified split ``split`` of ``spec`` (a :class:`~ntkscope.datasets.files.SplitData`,
    images ``(N, 3, 32, 32)`` uint8), from where :func:`locate_archive_set` finds it.

    Raises:
        NtkscopeInputError: nothing found (the message says how to get the data), or a missing,
            corrupt or unsafe file (the message names it).
    """
    path = locate_archive_set(spec, data_dir)
    if path is None:
        raise NtkscopeInputError(not_found_message(spec))
    files = [path / n for n in spec.members[split]] if path.is_dir() else [path]
    stamp = tuple((s.st_mtime_ns, s.st_size) for s in (f.stat() for f in files if f.exists()))
    images, labels = _read(spec, path.absolute(), split, stamp)
    what = "unpacked files" if path.is_dir() else "archive"
    return SplitData(images, labels, np.arange(len(labels)), f"{what} {path}", subset=False)


# Downloading --------------------------------------------------------------------------------

def _urls(spec: ArchiveSetSpec, mirrors: Sequence[str] | str | None) -> list[str]:
    """Full archive URLs: ``mirrors`` (a URL ending in ``.tar.gz`` / ``.tgz`` as it is, else
    a base URL to which the archive's name is appended), else ``$<url_env>``
    (whitespace-separated), else ``spec.urls``."""
    if mirrors is None:
        env = os.environ.get(spec.url_env, "").split()
        mirrors, what = (env, spec.url_env) if env else (list(spec.urls), "urls")
    else:
        what = "mirrors"
    if isinstance(mirrors, str):
        mirrors = [mirrors]
    out = []
    for url in mirrors:
        url = str(url).strip()
        if urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
            raise NtkscopeInputError(
                f"{what}: expected an http://, https:// or file:// URL, got {url!r}")
        if not url.endswith((".tar.gz", ".tgz")):
            url = (url if url.endswith("/") else url + "/") + spec.archive
        out.append(url)
    if not out:
        raise NtkscopeInputError(f"{what}: no URL given")
    return out


def _stream(url: str, fh: io.BufferedIOBase, limit: int, timeout: float, progress: bool
            ) -> tuple[str, str, int]:
    """Copy ``url`` into ``fh``; ``(md5, sha256, bytes)``. More than ``limit`` bytes fail."""
    from ntkscope._version import __version__
    from ntkscope.progress import Progress

    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    n = 0
    request = urllib.request.Request(url, headers={"User-Agent": f"ntkscope/{__version__}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # scheme checked
        length = response.headers.get("Content-Length") if hasattr(response, "headers") else None
        total = int(length) if length and length.isdigit() else 0
        with Progress(max(total, 1), f"download {Path(url).name}", unit="B",
                      quiet=not progress or total == 0) as bar:
            while chunk := response.read(_CHUNK):
                n += len(chunk)
                if n > limit:
                    raise OSError(f"more than {limit:,} bytes")
                md5.update(chunk)
                sha.update(chunk)
                fh.write(chunk)
                bar.update(n=len(chunk))
    return md5.hexdigest(), sha.hexdigest(), n


def _folder_ok(spec: ArchiveSetSpec, folder: Path) -> bool:
    """Every batch file of ``folder`` present with its MD5."""
    for name in (*spec.members["train"], *spec.members["test"]):
        path = folder / name
        if not path.is_file() or _md5(path.read_bytes()) != spec.member_md5.get(name, ""):
            return False
    return True


def _unpack(spec: ArchiveSetSpec, archive: Path, target: Path, say: Callable[[str], None]
            ) -> Path:
    """Unpack the verified ``archive`` into ``target/spec.folder`` atomically (module
    docstring); an existing folder there is replaced."""
    final = target / spec.folder
    tmp = Path(tempfile.mkdtemp(dir=target, prefix=f".{spec.folder}.", suffix=".tmp"))
    try:
        with archive.open("rb") as fh:
            files = _archive_members(spec, fh, str(archive), lambda _name: True)
        staged = tmp / spec.folder
        staged.mkdir()
        for name, raw in files.items():
            _check_member(spec, name, raw, f"{archive}:{spec.folder}/{name}")
            # atomic: staged (the folder is renamed into place whole below)
            (staged / name).write_bytes(raw)
        missing = [n for n in (*spec.members["train"], *spec.members["test"]) if n not in files]
        if missing:
            raise NtkscopeInputError(f"{archive}: no {spec.folder}/{missing[0]} in the archive")
        old = None
        if final.exists():
            old = tmp / "old"
            os.replace(final, old)
        os.replace(staged, final)
        say(f"unpacked {len(files)} files into {final}")
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed download created (deepest first), if still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def download_archive_set(spec: ArchiveSetSpec, dest: str | os.PathLike[str] | None = None,
                         mirrors: Sequence[str] | str | None = None, *, timeout: float = 60.0,
                         log: Callable[[str], None] | None = None, progress: bool = False
                         ) -> Path:
    """Download, verify and unpack the archive of ``spec`` into ``dest/<folder>``.

    The archive is streamed into a temporary file in ``dest`` from each URL in turn until one
    gives a file of the published size, MD5 and SHA-256; it is then unpacked safely and
    atomically (module docstring) and deleted. An intact folder already in ``dest`` is kept.
    On failure nothing is left behind.

    Args:
        spec: the data set (:data:`ARCHIVE_SETS`).
        dest: target directory (default ``<user cache>/<name>``, which the loaders search).
        mirrors: archive URLs or base URLs (default ``$NTKSCOPE_<NAME>_URL``, else
            ``spec.urls``).
        timeout: seconds per connection attempt.
        log: called with one line per step; progress: show a progress bar.

    Returns:
        the unpacked folder.

    Raises:
        NtkscopeInputError: bad URLs, no URL gave an intact archive (the message lists each
            failure), an unsafe archive, or an unwritable ``dest``.
    """
    from ntkscope.io import ensure_writable_dir

    say = log or (lambda _line: None)
    target = default_dir(spec) if dest is None else Path(dest).expanduser()
    if target.exists() and not target.is_dir():
        raise NtkscopeInputError(f"dest: {target} exists and is not a directory")
    urls = _urls(spec, mirrors)
    if (target / spec.folder).is_dir() and _folder_ok(spec, target / spec.folder):
        say(f"{target / spec.folder}: present, verified")
        return target / spec.folder
    created = [d for d in (target, *target.parents) if not d.exists()]  # deepest first
    ensure_writable_dir(target, "dest")
    limit = (spec.archive_bytes or 2**30) + 1
    failures = []
    try:
        for url in urls:
            fd, name = tempfile.mkstemp(dir=target, prefix=f".{spec.archive}.", suffix=".tmp")
            tmp = Path(name)
            try:
                with os.fdopen(fd, "wb") as fh:
                    md5, sha, size = _stream(url, fh, limit, timeout, progress)
                _verify_archive(spec, md5, sha, size, url)
                say(f"{url}: {size:,} bytes, verified")
                return _unpack(spec, tmp, target, say)
            except urllib.error.HTTPError as exc:
                failures.append(f"{url}: HTTP {exc.code}")
            except NtkscopeInputError as exc:
                if not str(exc).startswith(url):
                    raise  # unsafe content of a verified archive, or the file system
                failures.append(str(exc))
            except (urllib.error.URLError, http.client.HTTPException, OSError,
                    ValueError) as exc:
                failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
            finally:
                tmp.unlink(missing_ok=True)
            say(f"failed: {failures[-1]}")
    except BaseException:
        _remove_empty(created)
        raise
    _remove_empty(created)
    raise NtkscopeInputError(f"download: no URL gave an intact {spec.archive} "
                             f"({'; '.join(failures)}); nothing was written")
