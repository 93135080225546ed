"""CIFAR-10/100: archives in the exact CIFAR format built here, served from 127.0.0.1.

No real CIFAR is reachable: each test builds ``cifar-10-python.tar.gz`` (Python-2-style
protocol-2 pickles, bytes keys, the original member names) and points the expected checksums
at it; the loaded numbers are checked against a direct numpy decoding of the arrays written.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import json
import os
import pickle
import struct
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ntkscope.datasets import ARCHIVE_SETS, CIFAR10, CIFAR100, download_dataset, load_dataset
from ntkscope.datasets.cifar import BatchUnpickler, parse_batch
from ntkscope.generic import model_inputs
from ntkscope.validation import NtkscopeInputError

PER_BATCH = {"cifar10": 6, "cifar100": 0}  # images per CIFAR-10 batch file


# ---------------------------------------------------------------------------------------------
# Building archives in the CIFAR format


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes pickles the way Python 2's cPickle wrote the CIFAR batches (protocol 2): every
    string as a byte string (``BINSTRING``), numpy's reconstruct under
    ``numpy.core.multiarray``."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes | str) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj: object, name: str | None = None) -> None:
        name = name or obj.__name__  # type: ignore[attr-defined]
        module = "numpy.core.multiarray" if name == "_reconstruct" else obj.__module__
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)


def py2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


@dataclasses.dataclass
class Built:
    """An archive and what it holds: ``images[split]`` (N, 3072) uint8, ``labels[split]``."""

    path: Path
    spec: object
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]


def _batches(spec, per_class: dict[str, int], rng: np.random.Generator
             ) -> tuple[dict[str, bytes], dict[str, np.ndarray], dict[str, np.ndarray]]:
    classes = len(spec.class_names)
    files, images, labels = {}, {}, {}
    for split, members in spec.members.items():
        lab = rng.permutation(np.repeat(np.arange(classes), per_class[split]))
        img = rng.integers(1, 256, size=(len(lab), 3072), dtype=np.uint8)
        images[split], labels[split] = img, lab
        for k, chunk in enumerate(np.array_split(np.arange(len(lab)), len(members))):
            batch = {b"batch_label": f"batch {k}".encode(),
                     spec.label_key: [int(v) for v in lab[chunk]],
                     b"data": img[chunk],
                     b"filenames": [f"img_{i}.png".encode() for i in chunk]}
            if spec.label_key == b"fine_labels":
                batch[b"coarse_labels"] = [int(v) // 5 for v in lab[chunk]]
            files[members[k]] = py2_pickle(batch)
    meta = {b"label_names": [n.encode() for n in spec.class_names], b"num_vis": 3072}
    files["batches.meta" if spec is CIFAR10 else "meta"] = py2_pickle(meta)
    return files, images, labels


def tar_gz(members: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:
    """A gzip-compressed tar of ``members`` (name -> content), a folder entry first."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        folders = {name.split("/")[0] for name in members}
        for folder in sorted(folders):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buf.getvalue()


def _md5(raw: bytes) -> str:
    return hashlib.md5(raw, usedforsecurity=False).hexdigest()


def build(base_spec, directory: Path, per_class: dict[str, int] | None = None, seed: int = 0,
          files: dict[str, bytes] | None = None) -> Built:
    """Write ``directory/<archive>`` and return it with a spec whose checksums are its own."""
    rng = np.random.default_rng(seed)
    built, images, labels = _batches(base_spec, per_class or {"train": 3, "test": 2}, rng)
    built.update(files or {})
    raw = tar_gz({f"{base_spec.folder}/{n}": v for n, v in built.items()})
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / base_spec.archive
    path.write_bytes(raw)
    spec = dataclasses.replace(base_spec, md5=_md5(raw), sha256=hashlib.sha256(raw).hexdigest(),
                               archive_bytes=len(raw),
                               member_md5={n: _md5(v) for n, v in built.items()})
    return Built(path, spec, images, labels)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No NTKSCOPE_DATA, no URL override, an empty user cache."""
    for var in ("NTKSCOPE_DATA", CIFAR10.url_env, CIFAR100.url_env):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def use(monkeypatch: pytest.MonkeyPatch, built: Built) -> None:
    """Make the loaders expect the built archive's checksums."""
    monkeypatch.setitem(ARCHIVE_SETS, built.spec.name, built.spec)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def www(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served at ``http://127.0.0.1:PORT/`` (an ephemeral port)."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _normalized(rows: np.ndarray) -> np.ndarray:
    x = rows.astype(np.float64) / 255.0
    return x * np.sqrt(3072) / np.linalg.norm(x, axis=1, keepdims=True)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob(".*"))


# ---------------------------------------------------------------------------------------------
# Downloading, unpacking, loading


def test_download_unpack_and_load(www: tuple[Path, str], isolated: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root, url = www
    b = build(CIFAR10, root)
    use(monkeypatch, b)
    lines: list[str] = []
    folder = download_dataset("cifar10", mirrors=[url + "missing/", url], log=lines.append)
    target = isolated / "ntkscope" / "cifar10"
    assert folder == target / "cifar-10-batches-py"
    assert sorted(p.name for p in target.iterdir()) == ["cifar-10-batches-py"]  # archive gone
    assert sorted(p.name for p in folder.iterdir()) == sorted(b.spec.member_md5)
    assert any("HTTP 404" in line for line in lines) and any("verified" in line for line in lines)
    ds = load_dataset("cifar10", 20, seed=3)
    assert ds.source == f"unpacked files {folder}" and not ds.subset and ds.note is None
    assert ds.X.shape == (20, 3072) and ds.images.shape == (20, 3, 32, 32)
    assert ds.shape == (3, 32, 32) and ds.classes == tuple(range(10))
    np.testing.assert_allclose(np.sum(ds.X**2, axis=1), 3072.0, rtol=1e-12)
    np.testing.assert_array_equal(ds.labels, b.labels["train"][ds.indices])
    np.testing.assert_allclose(ds.X, _normalized(b.images["train"][ds.indices]), rtol=1e-13)
    # channel-first: plane 0 of image i is the first 1024 values of its row (red)
    i = ds.indices[0]
    red = b.images["train"][i, :1024].reshape(32, 32).astype(float)
    np.testing.assert_allclose(ds.images[0, 0] / ds.images[0, 0, 0, 0], red / red[0, 0])
    assert np.bincount(ds.labels, minlength=10).tolist() == [2] * 10  # class-balanced
    np.testing.assert_array_equal(ds.y, np.where(ds.labels % 2 == 0, 1.0, -1.0))  # parity
    assert len(set(ds.indices.tolist())) == 20
    again = load_dataset("cifar10", 20, seed=3)
    np.testing.assert_array_equal(again.indices, ds.indices)
    assert not np.array_equal(load_dataset("cifar10", 20, seed=4).indices, ds.indices)
    # a second download finds the folder intact and fetches nothing
    (root / CIFAR10.archive).unlink()
    assert download_dataset("cifar10", mirrors=[url]) == folder


def test_targets_test_split_and_one_hot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = build(CIFAR10, tmp_path / "data", per_class={"train": 3, "test": 4})
    use(monkeypatch, b)
    # offline: the archive in --data-dir, read in memory, nothing unpacked there
    ds = load_dataset("cifar10", 8, seed=1, target="pair:3,5", split="test",
                      data_dir=tmp_path / "data")
    assert os.listdir(tmp_path / "data") == [CIFAR10.archive]
    assert ds.source == f"archive {b.path}" and ds.classes == (3, 5)
    assert sorted(ds.labels.tolist()) == [3] * 4 + [5] * 4
    np.testing.assert_array_equal(ds.y, np.where(ds.labels == 3, 1.0, -1.0))
    np.testing.assert_allclose(ds.X, _normalized(b.images["test"][ds.indices]), rtol=1e-13)
    onehot = ds.one_hot()
    assert onehot.shape == (8, 2) and np.all(onehot.sum(axis=1) == 1)
    np.testing.assert_array_equal(np.array(ds.classes)[onehot.argmax(axis=1)], ds.labels)
    full = load_dataset("cifar10", 30, data_dir=tmp_path / "data")
    centered = full.one_hot(centered=True)
    assert centered.shape == (30, 10)
    np.testing.assert_allclose(centered.sum(axis=1), 0.0, atol=1e-15)
    np.testing.assert_allclose(centered[np.arange(30), full.labels], 0.9)
    with pytest.raises(NtkscopeInputError, match="only 30 are available"):
        load_dataset("cifar10", 31, data_dir=tmp_path / "data")
    with pytest.raises(NtkscopeInputError, match="must be 3072"):
        load_dataset("cifar10", 4, data_dir=tmp_path / "data", dim=784)
    with pytest.raises(NtkscopeInputError, match="0-9"):
        load_dataset("cifar10", 4, data_dir=tmp_path / "data", target="pair:3,10")


def test_url_from_environment_and_cli(www: tuple[Path, str], tmp_path: Path, isolated: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from ntkscope.cli.main import main

    root, url = www
    b = build(CIFAR10, root / "mirror")
    use(monkeypatch, b)
    assert main(["data", "info", "cifar10", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert list(info) == ["cifar10 train", "cifar10 test"]
    assert all(v.startswith("not found") for v in info.values())
    monkeypatch.setenv(CIFAR10.url_env, f"{url}mirror/{CIFAR10.archive}")
    assert main(["data", "download", "CIFAR-10"]) == 0
    out, err = capsys.readouterr()
    folder = isolated / "ntkscope" / "cifar10" / "cifar-10-batches-py"
    assert out.strip() == str(folder) and "verified" in err
    assert main(["data", "info", "cifar10", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cifar10 test"] == f"unpacked files {folder}"
    # --mirror as a base URL, into --dest
    assert main(["data", "download", "cifar10", "--mirror", url + "mirror",
                 "--dest", str(tmp_path / "d")]) == 0
    capsys.readouterr()
    assert (tmp_path / "d" / "cifar-10-batches-py" / "test_batch").is_file()
    # NTKSCOPE_DATA with the unpacked folder inside
    monkeypatch.setenv("NTKSCOPE_DATA", str(tmp_path / "d"))
    assert load_dataset("cifar10", 4, split="test").source.startswith(
        f"unpacked files {tmp_path / 'd'}")


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_download_rejected(damage: str, www: tuple[Path, str], isolated: Path,
                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from ntkscope.cli.main import main

    root, url = www
    b = build(CIFAR10, root / "good")
    use(monkeypatch, b)
    raw = bytearray(b.path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
        raw[100] ^= 0x01
    else:
        raw = raw[: len(raw) - 1000]
    (root / "bad").mkdir()
    (root / "bad" / CIFAR10.archive).write_bytes(raw)
    match = "checksum mismatch" if damage == "flip" else "truncated"
    with pytest.raises(NtkscopeInputError, match=match) as info:
        download_dataset("cifar10", mirrors=[url + "bad/"])
    assert "nothing was written" in str(info.value)
    assert not (isolated / "ntkscope").exists()  # no cache, no temporary file
    with pytest.raises(NtkscopeInputError, match="not found"):
        load_dataset("cifar10", 4)
    dest = tmp_path / "dest"
    dest.mkdir()
    assert main(["data", "download", "cifar10", "--mirror", url + "bad", "--dest",
                 str(dest)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and match in err.splitlines()[-1] and "Traceback" not in err
    assert os.listdir(dest) == []
    # the corrupt copy first, a good one second: the good one wins
    folder = download_dataset("cifar10", dest, [url + "bad/", url + "good/"])
    assert load_dataset("cifar10", 4, data_dir=folder).X.shape == (4, 3072)
    # a corrupt archive or unpacked file given for offline use is refused too
    (tmp_path / "offline").mkdir()
    (tmp_path / "offline" / CIFAR10.archive).write_bytes(raw)
    with pytest.raises(NtkscopeInputError, match=match):
        load_dataset("cifar10", 4, data_dir=tmp_path / "offline")
    batch = folder / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:-10])
    with pytest.raises(NtkscopeInputError, match="data_batch_2: checksum mismatch"):
        load_dataset("cifar10", 4, data_dir=folder)
    assert download_dataset("cifar10", dest, [url + "good/"]) == folder  # replaced whole
    assert load_dataset("cifar10", 4, data_dir=folder).X.shape == (4, 3072)
    assert _leftovers(dest) == []


# ---------------------------------------------------------------------------------------------
# Safety: pickles and tar members


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    evil = py2_pickle({b"data": _Evil(marker), b"labels": []})
    b = build(CIFAR10, tmp_path / "data", files={"data_batch_1": evil})
    use(monkeypatch, b)  # its checksum matches: the unpickler itself must refuse
    with pytest.raises(NtkscopeInputError, match=r"unsafe or broken pickle.*(posix|os)\.system"):
        load_dataset("cifar10", 4, data_dir=tmp_path / "data")
    assert not marker.exists()
    for obj, match in [
        (np.array([1, 2], dtype=object), "only uint8"),
        (np.zeros((2, 3072), dtype=np.float64), "only uint8"),
        (eval, "builtins.eval"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "integers 0-9"),
        ({b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]}, "n x 3072"),
        ([1, 2], "not a dictionary"),
    ]:
        with pytest.raises(NtkscopeInputError, match=match):
            parse_batch(CIFAR10, py2_pickle(obj), "x")
    with pytest.raises(NtkscopeInputError, match=r"_codecs\.encode"):  # Python 3 protocol 2
        parse_batch(CIFAR10, pickle.dumps({b"data": 1}, protocol=2), "x")
    with pytest.raises(NtkscopeInputError, match=r"x: unsafe or broken pickle: .*truncated"):
        parse_batch(CIFAR10, py2_pickle({b"data": 1})[:-5], "x")
    with pytest.raises(pickle.UnpicklingError):
        BatchUnpickler(io.BytesIO(pickle.dumps(os.system))).load()
    # the Python-2-style pickle of a real batch loads with bytes keys, as the original
    data = np.arange(3072 * 2, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    images, labels = parse_batch(CIFAR10, py2_pickle({b"data": data, b"labels": [7, 0]}), "x")
    np.testing.assert_array_equal(images.reshape(2, -1), data)
    assert labels.tolist() == [7, 0]


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(("member", "match"), [
    (_member("cifar-10-batches-py/../../evil"), "unsafe member path"),
    (_member("/tmp/evil-cifar-abs"), "unsafe member path"),
    (_member("cifar-10-batches-py/link", tarfile.SYMTYPE, "/etc/passwd"), "link or device"),
    (_member("cifar-10-batches-py/hard", tarfile.LNKTYPE, "/etc/passwd"), "link or device"),
    (_member("elsewhere/file"), "outside"),
])
def test_tar_traversal_refused(member: tarfile.TarInfo, match: str, www: tuple[Path, str],
                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, url = www
    rng = np.random.default_rng(0)
    files, _, _ = _batches(CIFAR10, {"train": 1, "test": 1}, rng)
    raw = tar_gz({f"cifar-10-batches-py/{n}": v for n, v in files.items()}, [member])
    (root / CIFAR10.archive).write_bytes(raw)
    spec = dataclasses.replace(CIFAR10, md5=_md5(raw), sha256=None, archive_bytes=None,
                               member_md5={n: _md5(v) for n, v in files.items()})
    monkeypatch.setitem(ARCHIVE_SETS, "cifar10", spec)
    dest = tmp_path / "dest"
    with pytest.raises(NtkscopeInputError, match=match):
        download_dataset("cifar10", dest, [url])
    assert not dest.exists() and not (tmp_path / "evil").exists()
    assert not Path("/tmp/evil-cifar-abs").exists()
    with pytest.raises(NtkscopeInputError, match=match):  # read in place: refused as well
        load_dataset("cifar10", 2, data_dir=root)


# ---------------------------------------------------------------------------------------------
# CIFAR-100, models, the MLP-only paths


def test_cifar100(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = build(CIFAR100, tmp_path / "data", per_class={"train": 1, "test": 1})
    use(monkeypatch, b)
    ds = load_dataset("cifar-100", 100, data_dir=tmp_path / "data")
    assert sorted(ds.labels.tolist()) == list(range(100)) and ds.X.shape == (100, 3072)
    np.testing.assert_array_equal(ds.labels, b.labels["train"][ds.indices])
    np.testing.assert_allclose(ds.X, _normalized(b.images["train"][ds.indices]), rtol=1e-13)
    pair = load_dataset("cifar100", 2, target="pair:42,99", split="test",
                        data_dir=tmp_path / "data")
    assert sorted(pair.labels.tolist()) == [42, 99]
    with pytest.raises(NtkscopeInputError, match="0-99"):
        load_dataset("cifar100", 2, target="pair:1,100", data_dir=tmp_path / "data")
    assert len(CIFAR100.class_names) == 100 and CIFAR100.class_names[-1] == "worm"


def test_model_inputs_and_mlp_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from ntkscope.cli.main import main

    b = build(CIFAR10, tmp_path / "data")
    use(monkeypatch, b)
    monkeypatch.setenv("NTKSCOPE_DATA", str(tmp_path / "data"))
    conv = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.LazyLinear(1)).double()
    inputs = model_inputs(conv, "cifar10", 10, seed=2)
    ds = load_dataset("cifar10", 10, seed=2)
    assert inputs.shape == (3, 32, 32) and tuple(inputs.x.shape) == (10, 3, 32, 32)
    np.testing.assert_array_equal(inputs.x.numpy(), ds.images)
    np.testing.assert_array_equal(inputs.labels, ds.labels)
    flat = model_inputs(nn.Linear(3072, 1).double(), "cifar10", 10, seed=2)
    assert flat.shape == (3072,) and torch.equal(flat.x, torch.as_tensor(ds.X))
    with pytest.raises(NtkscopeInputError, match="3072 values"):
        model_inputs(conv, "cifar10", 4, input_shape="1,28,28")
    # the MLP check takes 784 inputs: a clear one-line refusal; ntk and train take M0 = 3072
    net = ["--activation", "relu", "--sigma-w2", "2", "--sigma-b2", "0", "--depth", "2",
           "--width", "16", "--dataset", "cifar10", "--samples", "6"]
    assert main(["check", *net]) == 2
    err = capsys.readouterr().err
    assert "--model" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["ntk", *net, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["size"] == 6 and result["eig_min"] > 0
    assert main(["ntk", *net, "--input-dim", "784"]) == 2
    assert "must be 3072" in capsys.readouterr().err
    assert main(["train", *net, "--max-steps", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 3 and result["final_loss"] < result["initial_loss"]


def test_not_found_message() -> None:
    with pytest.raises(NtkscopeInputError, match="ntkscope data download cifar10"):
        load_dataset("cifar10", 4)
    with pytest.raises(NtkscopeInputError, match="no CIFAR-10"):
        load_dataset("cifar10", 4, data_dir=Path(__file__).parent)
