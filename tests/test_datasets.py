"""Data sets: idx parsing and verification, search order, subsets, sampling, targets, download."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linprog

from ntkscope.datasets import (
    DATASETS,
    FASHION_MNIST,
    IMAGE_SETS,
    MNIST,
    download_dataset,
    download_mnist,
    gaussian_sphere,
    load_dataset,
    load_inputs,
    user_cache_dir,
)
from ntkscope.datasets.idx import parse_idx, read_idx_file
from ntkscope.datasets.loading import balanced_choice, image_split
from ntkscope.datasets.subset import PER_CLASS, build_subset, load_subset, subset_path
from ntkscope.validation import NtkscopeInputError

FILES = MNIST.files  # train-images, train-labels, t10k-images, t10k-labels (stems)


def _shared() -> Path | None:
    """The shared folder: $NTKSCOPE_SHARED, else beside the clone (``<repo>/../shared``)."""
    env = os.environ.get("NTKSCOPE_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared")
    return next((c for c in candidates if (c / "datasets" / "mnist").is_dir()), None)


SHARED = _shared()
FASHION_SYSTEM_DIR = Path(FASHION_MNIST.system_dirs[0])


@pytest.fixture
def mnist_dir() -> Path:
    """The four original MNIST files (gzip) from the shared folder."""
    if SHARED is None:
        pytest.skip("the shared folder with the MNIST files is absent (set NTKSCOPE_SHARED)")
    return SHARED / "datasets" / "mnist"


# The same spec objects in every test, so the in-memory caches keyed by spec keep working.
_NO_SYSTEM_DIRS = {n: dataclasses.replace(s, system_dirs=()) for n, s in IMAGE_SETS.items()}


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No NTKSCOPE_DATA, an empty user cache, no system directories: only what a test adds."""
    monkeypatch.delenv("NTKSCOPE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name, spec in _NO_SYSTEM_DIRS.items():
        monkeypatch.setitem(IMAGE_SETS, name, spec)
    return tmp_path / "cache"


def _link_files(src: Path, dest: Path, stems: tuple[str, ...] = FILES) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        (dest / f"{stem}.gz").symlink_to(src / f"{stem}.gz")
    return dest


def _raw(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


# ---------------------------------------------------------------------------------------------
# idx files


def test_parse_real_mnist_files(mnist_dir: Path) -> None:
    train = image_split(MNIST, "train", mnist_dir)
    test = image_split(MNIST, "test", mnist_dir)
    assert train.images.shape == (60_000, 28, 28) and train.labels.shape == (60_000,)
    assert test.images.shape == (10_000, 28, 28) and test.labels.shape == (10_000,)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.uint8
    assert list(train.labels[:5]) == [5, 0, 4, 1, 9]
    assert list(test.labels[:5]) == [7, 2, 1, 0, 4]
    assert train.images.max() == 255 and train.images.min() == 0
    assert not train.subset and str(mnist_dir) in train.source
    assert np.array_equal(np.bincount(test.labels),
                          [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


@pytest.mark.parametrize("stem", ["t10k-labels-idx1-ubyte", "t10k-images-idx3-ubyte"])
def test_checksum_catches_one_byte_change(mnist_dir: Path, tmp_path: Path, stem: str) -> None:
    raw = bytearray(_raw(mnist_dir / f"{stem}.gz"))
    raw[-500] = (raw[-500] + 1) % 256  # one label or one pixel
    bad = tmp_path / stem
    bad.write_bytes(bytes(raw))
    kind = "labels" if "labels" in stem else "images"
    assert parse_idx(bytes(raw), kind, bad).shape[0] == 10_000  # structurally fine ...
    with pytest.raises(NtkscopeInputError, match="checksum mismatch") as info:
        read_idx_file(bad, kind, MNIST.sha256[stem])  # ... but not the MNIST file
    assert str(bad) in str(info.value)


def _labels_idx(labels: bytes, magic: int = 0x801, count: int | None = None) -> bytes:
    n = len(labels) if count is None else count
    return magic.to_bytes(4, "big") + n.to_bytes(4, "big") + labels


@pytest.mark.parametrize(
    ("content", "kind", "match"),
    [
        (_labels_idx(b"\x01\x02", magic=0x803), "labels", "wrong magic number 0x00000803"),
        (_labels_idx(b"\x01\x02", count=3), "labels", "truncated idx file"),
        (_labels_idx(b"\x01\x02", count=1), "labels", "overlong idx file"),
        (b"\x00\x00", "labels", "truncated idx file"),
        ((0x803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (1, 28, 27))
         + bytes(28 * 27), "images", "28 x 27 pixels"),
        (_labels_idx(b"\x01"), "images", "wrong magic number"),
    ],
    ids=["magic", "short", "long", "header", "pixels", "labels-as-images"],
)
def test_parse_idx_rejects(content: bytes, kind: str, match: str, tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(gzip.compress(content))
    with pytest.raises(NtkscopeInputError, match=match) as info:
        read_idx_file(path, kind, "0" * 64)
    assert str(path) in str(info.value)
    assert parse_idx(_labels_idx(b"\x01\x02"), "labels", "x").tolist() == [1, 2]


def test_corrupt_gzip_and_missing_files(mnist_dir: Path, tmp_path: Path) -> None:
    d = _link_files(mnist_dir, tmp_path / "d", FILES[:3])
    data = bytearray((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (d / "t10k-labels-idx1-ubyte").write_bytes(bytes(data[:-40]))  # gzip cut short
    with pytest.raises(NtkscopeInputError, match="corrupt gzip") as info:
        load_dataset("mnist", 10, split="test", data_dir=d)
    assert "t10k-labels-idx1-ubyte" in str(info.value)
    data[len(data) // 2] ^= 0xFF  # a flipped byte inside the deflate stream (or its CRC)
    (d / "t10k-labels-idx1-ubyte").write_bytes(bytes(data))
    with pytest.raises(NtkscopeInputError, match="corrupt gzip"):
        load_dataset("mnist", 10, split="test", data_dir=d)
    (d / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(NtkscopeInputError, match=r"t10k-labels-idx1-ubyte\[\.gz\]: missing"):
        load_dataset("mnist", 10, split="test", data_dir=d)
    assert load_dataset("mnist", 10, data_dir=d).X.shape == (10, 784)  # train split intact


def test_gz_and_raw_files_load_alike(mnist_dir: Path, tmp_path: Path) -> None:
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for stem in FILES[2:]:
        (raw_dir / stem).write_bytes(_raw(mnist_dir / f"{stem}.gz"))
    mixed = _link_files(mnist_dir, tmp_path / "mixed", FILES[2:3])
    shutil.copy(raw_dir / FILES[3], mixed / FILES[3])
    a = load_dataset("mnist", 30, seed=3, split="test", data_dir=mnist_dir)
    for d in (raw_dir, mixed):
        b = load_dataset("mnist", 30, seed=3, split="test", data_dir=d)
        assert np.array_equal(a.X, b.X) and np.array_equal(a.indices, b.indices)
        assert b.source == f"full files in {d}"


# ---------------------------------------------------------------------------------------------
# Normalization, sampling, targets


def test_normalization(mnist_dir: Path) -> None:
    ds = load_dataset("mnist", 300, seed=1, data_dir=mnist_dir)
    assert ds.X.shape == (300, 784) and ds.X.dtype == np.float64
    np.testing.assert_allclose(np.sum(ds.X**2, axis=1), 784.0, rtol=1e-12)
    assert ds.X.min() == 0.0  # no centering
    images = image_split(MNIST, "train", mnist_dir).images[ds.indices].reshape(300, 784) / 255
    scale = ds.X / np.where(images > 0, images, np.nan)
    np.testing.assert_allclose(np.nanmax(scale, 1), np.nanmin(scale, 1), rtol=1e-12)
    assert np.array_equal(ds.X == 0, images == 0)
    c0 = ds.X @ ds.X.T / 784
    assert c0.min() >= 0.0 and c0.max() <= 1.0 + 1e-12


@pytest.mark.parametrize(("samples", "low", "high"), [(100, 10, 10), (105, 10, 11), (7, 0, 1)])
def test_balanced_parity(mnist_dir: Path, samples: int, low: int, high: int) -> None:
    ds = load_dataset("mnist", samples, seed=2, data_dir=mnist_dir)
    counts = np.bincount(ds.labels, minlength=10)
    assert counts.sum() == samples and counts.min() == low and counts.max() == high
    assert np.array_equal(ds.y, np.where(ds.labels % 2 == 0, 1.0, -1.0))
    assert ds.target == "parity" and ds.split == "train"
    full = image_split(MNIST, "train", mnist_dir)
    assert np.array_equal(full.labels[ds.indices], ds.labels)
    assert len(set(ds.indices.tolist())) == samples
    if samples >= 10:
        assert np.any(np.diff(ds.labels) < 0)  # shuffled, not sorted by class


def test_pair_target(mnist_dir: Path) -> None:
    ds = load_dataset("mnist", 51, seed=0, target="pair: 3, 5", data_dir=mnist_dir)
    assert ds.target == "pair:3,5"
    assert sorted(np.bincount(ds.labels)[[3, 5]]) == [25, 26]
    assert set(ds.labels.tolist()) == {3, 5}
    assert np.array_equal(ds.y, np.where(ds.labels == 3, 1.0, -1.0))
    rev = load_dataset("mnist", 51, seed=0, target="pair:5,3", data_dir=mnist_dir)
    assert set(rev.labels[rev.y > 0].tolist()) == {5}


def test_balanced_choice_short_classes() -> None:
    labels = np.repeat([0, 1, 2], [2, 10, 10])
    rng = np.random.default_rng(0)
    for samples, expect in [(20, [2, 9, 9]), (22, [2, 10, 10]), (3, [1, 1, 1])]:
        pos = balanced_choice(labels, (0, 1, 2), samples, rng, "x")
        assert np.bincount(labels[pos], minlength=3).tolist() == expect
    counts = np.bincount(labels[balanced_choice(labels, (0, 1, 2), 7, rng, "x")], minlength=3)
    assert counts[0] == 2 and sorted(counts[1:]) == [2, 3]
    with pytest.raises(NtkscopeInputError, match="asked for 23, but only 22 are available in x"):
        balanced_choice(labels, (0, 1, 2), 23, rng, "x")


def test_seed_determinism() -> None:
    a = load_dataset("mnist", 40, seed=7)
    b = load_dataset("mnist", 40, seed=7)
    c = load_dataset("mnist", 40, seed=8)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.X, b.X)
    assert np.array_equal(a.y, b.y)
    assert not np.array_equal(a.indices, c.indices)
    t = load_dataset("mnist", 40, seed=7, split="test")
    assert t.split == "test" and np.all(t.indices < 10_000)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target": "pair:3,3"}, "must differ"),
        ({"target": "pair:3"}, "pair:A,B"),
        ({"target": "pair:3,10"}, "0-9"),
        ({"target": "pair:a,b"}, "pair:A,B"),
        ({"target": "pair:\u00b2,3"}, "pair:A,B"),
        ({"target": "pair:1,2,3"}, "pair:A,B"),
        ({"target": "xor"}, "unknown target 'xor'"),
        ({"target": "sign"}, "unknown target"),
        ({"split": "validation"}, "split"),
        ({"samples": 2001}, "asked for 2001, but only 2000 are available"),
        ({"samples": 401, "target": "pair:1,7"}, "only 400 are available in classes 1 and 7"),
        ({"samples": 0}, "samples"),
        ({"seed": -1}, "seed"),
        ({"dim": 100}, "784"),
        ({"data_dir": "/nonexistent/dir"}, "data_dir: /nonexistent/dir is not a directory"),
    ],
)
def test_load_dataset_bad_input(kwargs: dict, match: str) -> None:
    args = {"samples": 10, **kwargs}
    with pytest.raises(NtkscopeInputError, match=match):
        load_dataset("mnist", **args)


def test_unknown_dataset_and_aliases() -> None:
    with pytest.raises(NtkscopeInputError, match="unknown data set 'cifar'"):
        load_dataset("cifar", 3)
    with pytest.raises(NtkscopeInputError, match="unknown data set"):
        load_inputs("cifar", 3, 784)
    assert load_dataset("Fashion_MNIST", 3).name == "fashion-mnist"


def test_samples_beyond_full_split(mnist_dir: Path) -> None:
    with pytest.raises(NtkscopeInputError, match=r"only 10000 are available in the MNIST test"):
        load_dataset("mnist", 10_001, split="test", data_dir=mnist_dir)
    ds = load_dataset("mnist", 2_000, split="test", target="pair:0,1", data_dir=mnist_dir)
    assert np.bincount(ds.labels)[[0, 1]].tolist() == [980, 1020]  # zeros exhausted first


def test_gaussian_dataset() -> None:
    ds = load_dataset("gaussian", 200, seed=4, dim=30)
    assert np.array_equal(ds.X, gaussian_sphere(200, 30, seed=4))
    assert ds.target == "sign" and ds.source == "synthetic" and ds.note is None
    assert set(ds.y.tolist()) == {-1.0, 1.0} and np.array_equal(ds.y, 2.0 * ds.labels - 1)
    # one fixed hyperplane through 0 labels every draw: train and test together are linearly
    # separable (400 random labels in 30 dimensions would not be): y_i w.x_i >= 1 is feasible
    test = load_dataset("gaussian", 200, seed=4, dim=30, split="test")
    assert not np.allclose(test.X, ds.X)
    yx = np.vstack([ds.y[:, None] * ds.X, test.y[:, None] * test.X])
    lp = linprog(np.zeros(30), A_ub=-yx, b_ub=-np.ones(400), bounds=(None, None))
    assert lp.status == 0
    shuffled = yx * np.random.default_rng(0).permutation(np.r_[ds.y, test.y])[:, None]
    assert linprog(np.zeros(30), A_ub=-shuffled, b_ub=-np.ones(400), bounds=(None, None)
                   ).status == 2  # infeasible: the check can fail
    assert load_dataset("gaussian", 5).X.shape == (5, 784)
    with pytest.raises(NtkscopeInputError, match="synthetic"):
        load_dataset("gaussian", 5, data_dir=".")
    with pytest.raises(NtkscopeInputError, match="target"):
        load_dataset("gaussian", 5, target="parity")


def test_load_inputs() -> None:
    assert np.array_equal(load_inputs("gaussian", 6, 5, 2), gaussian_sphere(6, 5, 2))
    assert np.array_equal(DATASETS["gaussian"](6, 5, 2), gaussian_sphere(6, 5, 2))
    X = load_inputs("mnist", 12, 784, 1)
    assert np.array_equal(X, load_dataset("mnist", 12, seed=1).X)
    assert np.array_equal(DATASETS["mnist"](12, 784, 1), X)
    assert DATASETS["fashion-mnist"](4, 784, 0).shape == (4, 784)
    with pytest.raises(NtkscopeInputError, match="784"):
        load_inputs("mnist", 3, 4)


# ---------------------------------------------------------------------------------------------
# Shipped subsets and the search order


@pytest.mark.parametrize("spec", [MNIST, FASHION_MNIST], ids=lambda s: s.name)
def test_shipped_subset(spec, isolated: Path) -> None:  # type: ignore[no-untyped-def]
    for split, per_class in PER_CLASS.items():
        sub = load_subset(spec, split)
        assert sub.subset and sub.images.shape == (10 * per_class, 28, 28)
        assert np.bincount(sub.labels).tolist() == [per_class] * 10
        assert np.all(np.diff(sub.indices) > 0) and sub.indices[-1] < spec.sizes[split]
    ds = load_dataset(spec.name, 20, seed=5)
    assert ds.subset and ds.source.startswith("shipped subset") and "2,000" in ds.source
    assert "ntkscope data download" in ds.note
    np.testing.assert_allclose(np.sum(ds.X**2, axis=1), 784.0, rtol=1e-12)
    assert sum(p.stat().st_size for p in subset_path(spec).parent.glob("*.npz")) < 3 * 2**20


def _check_subset_matches(spec, directory: Path) -> None:  # type: ignore[no-untyped-def]
    for split in ("train", "test"):
        full = image_split(spec, split, directory)
        sub = load_subset(spec, split)
        assert np.array_equal(full.images[sub.indices], sub.images)
        assert np.array_equal(full.labels[sub.indices], sub.labels)
    ds_sub = load_dataset(spec.name, 25, seed=9)
    full = image_split(spec, "train", directory)
    expect = full.images[ds_sub.indices].reshape(25, -1) / 255.0
    np.testing.assert_allclose(ds_sub.X, expect * np.sqrt(784 / np.sum(expect**2, 1))[:, None])


def test_mnist_subset_matches_full_files(mnist_dir: Path) -> None:
    _check_subset_matches(MNIST, mnist_dir)


@pytest.mark.skipif(not FASHION_SYSTEM_DIR.is_dir(),
                    reason="Debian's dataset-fashion-mnist package is not installed")
def test_fashion_subset_and_system_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    _check_subset_matches(FASHION_MNIST, FASHION_SYSTEM_DIR)
    monkeypatch.setitem(IMAGE_SETS, "fashion-mnist", FASHION_MNIST)  # with its system dir
    ds = load_dataset("fashion-mnist", 10, split="test")
    assert ds.source == f"full files in {FASHION_SYSTEM_DIR}" and not ds.subset


def test_build_subset_is_reproducible(mnist_dir: Path, tmp_path: Path) -> None:
    out = build_subset(MNIST, mnist_dir, tmp_path / "m.npz")
    assert hashlib.sha256(out.read_bytes()).digest() == \
        hashlib.sha256(subset_path(MNIST).read_bytes()).digest()


def test_search_order(mnist_dir: Path, tmp_path: Path, isolated: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert user_cache_dir() == isolated / "ntkscope"
    assert load_dataset("mnist", 5).subset
    cache = _link_files(mnist_dir, isolated / "ntkscope" / "mnist")
    assert load_dataset("mnist", 5).source == f"full files in {cache}"
    env = _link_files(mnist_dir, tmp_path / "env" / "mnist")  # NTKSCOPE_DATA/<name>/
    monkeypatch.setenv("NTKSCOPE_DATA", str(tmp_path / "env"))
    assert load_dataset("mnist", 5).source == f"full files in {env}"
    flat = _link_files(mnist_dir, tmp_path / "flat")  # files directly in data_dir
    assert load_dataset("mnist", 5, data_dir=flat).source == f"full files in {flat}"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NtkscopeInputError, match="data_dir: no MNIST train files"):
        load_dataset("mnist", 5, data_dir=empty)  # an explicit directory never falls back
    monkeypatch.setenv("NTKSCOPE_DATA", str(tmp_path / "missing"))
    with pytest.raises(NtkscopeInputError, match="NTKSCOPE_DATA"):
        load_dataset("mnist", 5)


def test_other_data_sets_files_are_named(mnist_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(NtkscopeInputError,
                       match="this is the MNIST t10k-images-idx3-ubyte file, not the Fashion"):
        load_dataset("fashion-mnist", 5, split="test", data_dir=mnist_dir)
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    (swapped / "t10k-images-idx3-ubyte.gz").symlink_to(mnist_dir / "train-images-idx3-ubyte.gz")
    (swapped / "t10k-labels-idx1-ubyte.gz").symlink_to(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(NtkscopeInputError, match="MNIST train-images-idx3-ubyte file under"):
        load_dataset("mnist", 5, split="test", data_dir=swapped)


# ---------------------------------------------------------------------------------------------
# Download from a local HTTP server (never a real network)


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []  # noqa: RUF012 (shared log, reset by the fixture)

    def do_GET(self) -> None:
        _Handler.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT/``: ``good/`` (copies of the MNIST files) and ``bad/`` (the
    same, but the last file has one label changed and is validly re-gzipped)."""
    if SHARED is None:
        pytest.skip("the shared folder with the MNIST files is absent (set NTKSCOPE_SHARED)")
    root = tmp_path_factory.mktemp("www")
    src = SHARED / "datasets" / "mnist"
    for sub in ("good", "bad"):
        (root / sub).mkdir()
        for stem in FILES:
            shutil.copy(src / f"{stem}.gz", root / sub / f"{stem}.gz")
    raw = bytearray(_raw(src / "t10k-labels-idx1-ubyte.gz"))
    raw[100] = (raw[100] + 1) % 10
    (root / "bad" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_download_good_mirror(server: str, isolated: Path) -> None:
    _Handler.requests.clear()
    lines: list[str] = []
    dest = download_mnist(mirrors=[server + "missing", server + "good"], log=lines.append)
    assert dest == isolated / "ntkscope" / "mnist"
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{s}.gz" for s in FILES)
    assert len(_Handler.requests) == 8  # each file: 404 on the first mirror, then found
    assert any("HTTP 404" in line for line in lines)
    ds = load_dataset("mnist", 10)  # the loader now finds the cache
    assert ds.source == f"full files in {dest}"
    _Handler.requests.clear()
    download_mnist(mirrors=[server + "good"])  # everything present and verified: no request
    assert _Handler.requests == []


def test_download_rejects_corrupt_copy(server: str, isolated: Path, tmp_path: Path) -> None:
    with pytest.raises(NtkscopeInputError, match="checksum mismatch") as info:
        download_mnist(mirrors=[server + "bad"])
    assert "t10k-labels-idx1-ubyte" in str(info.value) and "nothing was written" in str(
        info.value)
    assert not (isolated / "ntkscope").exists()  # nothing left in the cache
    # the corrupt mirror first, a good one second: the good copy wins
    dest = download_dataset("mnist", tmp_path / "d", [server + "bad", server + "good"])
    assert load_dataset("mnist", 5, split="test", data_dir=dest).source.startswith("full")


def test_download_replaces_corrupt_local_file(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    download_mnist(dest, [server + "good"])
    (dest / "t10k-labels-idx1-ubyte").write_bytes(b"junk")  # shadows the .gz
    with pytest.raises(NtkscopeInputError, match="wrong magic number"):
        load_dataset("mnist", 5, split="test", data_dir=dest)
    _Handler.requests.clear()
    download_mnist(dest, [server + "good"])
    assert _Handler.requests == ["/good/t10k-labels-idx1-ubyte.gz"]
    assert not (dest / "t10k-labels-idx1-ubyte").exists()
    assert load_dataset("mnist", 5, split="test", data_dir=dest).X.shape == (5, 784)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mirrors": ["ftp://example.org/"]}, "mirrors"),
        ({"mirrors": []}, "mirrors"),
        ({"mirrors": ["http://127.0.0.1:9/"], "timeout": 2}, "Connection refused|refused"),
    ],
)
def test_download_bad_input(kwargs: dict, match: str, tmp_path: Path) -> None:
    with pytest.raises(NtkscopeInputError, match=match):
        download_mnist(tmp_path / "d", **kwargs)
    assert not (tmp_path / "d").exists()
    with pytest.raises(NtkscopeInputError, match="synthetic"):
        download_dataset("gaussian")


# ---------------------------------------------------------------------------------------------
# ntkscope data


def test_cli_data_download_and_info(server: str, isolated: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from ntkscope.cli.main import main

    assert main(["data", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert list(info) == ["mnist train", "mnist test", "fashion-mnist train", "fashion-mnist test",
                          "cifar10 train", "cifar10 test", "cifar100 train", "cifar100 test"]
    assert all(v.startswith("shipped subset") for v in list(info.values())[:4])
    assert all(v.startswith("not found") for v in list(info.values())[4:])
    assert main(["data", "download", "mnist", "--mirror", server + "bad"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "checksum mismatch" in err.splitlines()[-1]
    assert "Traceback" not in err and not (isolated / "ntkscope").exists()
    assert main(["data", "download", "MNIST", "--mirror", server + "good"]) == 0
    out, err = capsys.readouterr()
    dest = isolated / "ntkscope" / "mnist"
    assert out.strip() == str(dest) and "verified" in err
    assert main(["data", "info", "mnist"]) == 0
    out = capsys.readouterr().out
    assert f"mnist train  full files in {dest}" in out
    for argv, match in [(["info", "gaussian"], "synthetic"), (["info", "cifar"], "unknown"),
                        (["download", "mnist", "--timeout", "0"], "timeout"),
                        (["download", "mnist", "--mirror", "ftp://x/"], "mirrors")]:
        assert main(["data", *argv]) == 2
        out, err = capsys.readouterr()
        assert out == "" and match in err and len(err.strip().splitlines()) == 1
