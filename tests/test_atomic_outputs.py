"""Every output file appears whole or not at all.

A failure in the middle of writing (the writer raises after some bytes) leaves no target file
and no temporary debris, and an existing target keeps its old content. One static test checks
that every file write in ``src/ntkscope`` goes through :func:`ntkscope.io.atomic_open` /
:func:`ntkscope.io.atomic_savefig`; the others break each writer on purpose: kernels ``.npy``,
params ``.npz``, figures and CSVs, ``--plot`` PNGs, exports, data subsets.
"""

from __future__ import annotations

import io
import os
import re
import stat
import tokenize
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ntkscope.cli.main import main
from ntkscope.io import atomic_open, atomic_savefig
from ntkscope.store import Store, cell_key, export_table
from ntkscope.validation import NtkscopeInputError

SRC = Path(__file__).resolve().parents[1] / "src" / "ntkscope"
OLD = b"old content\n"


class Boom(RuntimeError):
    """The injected failure."""


def debris(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.name.endswith(".tmp")]


def assert_clean(target: Path, existed_with: bytes | None = None) -> None:
    """No temporary files beside ``target``; ``target`` absent or still ``existed_with``."""
    assert not debris(target.parent), debris(target.parent)
    if existed_with is None:
        assert not target.exists()
    else:
        assert target.read_bytes() == existed_with


def partial_then_raise(write: Callable[..., object]) -> Callable[..., object]:
    """A replacement writer: writes a few bytes to its file argument, then raises."""

    def broken(*args: object, **kwargs: object) -> object:
        fh = next(a for a in (*args, *kwargs.values()) if hasattr(a, "write"))
        fh.write(b"partial" if "b" in getattr(fh, "mode", "b") else "partial")  # type: ignore[attr-defined]
        raise Boom("injected failure mid-write")

    return broken


# ---------------------------------------------------------------------------------------------
# Every write goes through the atomic helpers

WRITE = re.compile(r"\bopen\(|\.savefig\(|\bnp\.savez?(_compressed)?\(|\.to_csv\(|\.write_text\("
                   r"|\.write_bytes\(|\bwrite_table\(|ZipFile\(|\.to_parquet\(")


def _string_lines(text: str) -> set[int]:
    """0-based numbers of the lines inside multi-line string literals (docstrings: their
    examples are not the module's own writes)."""
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
            lines.update(range(tok.start[0] - 1, tok.end[0]))
    return lines


def test_every_file_write_is_atomic() -> None:
    """Each write call in the package writes to a handle from ``atomic_open`` (or to memory)."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "io.py":
            continue
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        in_strings = _string_lines(text)
        for i, line in enumerate(lines):
            code = line.split("#")[0]
            if i in in_strings or not WRITE.search(code):
                continue
            context = "\n".join(lines[max(0, i - 3): i + 1])
            reading = (re.search(r"open\([^)]*[\"']r(b|:\w*)?[\"']", code)
                       or "os.open(os.devnull" in code)
            in_memory = re.search(r"\b(buf|io\.BytesIO\(\))\b", code)
            # "atomic: staged": a file in a temporary directory renamed into place whole
            through_atomic = ("atomic_open(" in context or "atomic_savefig(" in context
                              or "atomic: staged" in context)
            if not (reading or in_memory or through_atomic or "def " in code):
                offenders.append(f"{path.relative_to(SRC)}:{i + 1}: {line.strip()}")
    assert not offenders, "non-atomic file writes:\n" + "\n".join(offenders)


# ---------------------------------------------------------------------------------------------
# The helpers themselves


@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("mode", ["w", "wb"])
def test_atomic_open_failure_mid_write(tmp_path: Path, existing: bool, mode: str) -> None:
    target = tmp_path / "out.dat"
    if existing:
        target.write_bytes(OLD)
    with pytest.raises(Boom), atomic_open(target, mode) as fh:
        fh.write("partial" if mode == "w" else b"partial")
        fh.flush()
        assert not target.exists() or target.read_bytes() == OLD  # not visible yet
        raise Boom
    assert_clean(target, OLD if existing else None)


def test_atomic_open_interrupt_and_success(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_bytes(OLD)
    with pytest.raises(KeyboardInterrupt), atomic_open(target) as fh:
        fh.write("half")
        raise KeyboardInterrupt
    assert_clean(target, OLD)
    with atomic_open(target) as fh:
        fh.write("new")
    assert target.read_text() == "new" and not debris(tmp_path)


def test_atomic_open_permissions(tmp_path: Path) -> None:
    """A new file gets 0o666 less the umask (not mkstemp's 0o600); a replaced file keeps its
    mode."""
    umask = os.umask(0o022)
    try:
        new = tmp_path / "new.txt"
        with atomic_open(new) as fh:
            fh.write("x")
        assert stat.S_IMODE(new.stat().st_mode) == 0o644
        old = tmp_path / "old.txt"
        old.write_text("x")
        old.chmod(0o640)
        with atomic_open(old) as fh:
            fh.write("y")
        assert stat.S_IMODE(old.stat().st_mode) == 0o640
    finally:
        os.umask(umask)


def test_atomic_open_creates_missing_directories(tmp_path: Path) -> None:
    with atomic_open(tmp_path / "missing-dir" / "sub" / "x.txt") as fh:
        fh.write("x")
    assert (tmp_path / "missing-dir" / "sub" / "x.txt").read_text() == "x"


def test_atomic_open_unwritable_place_is_input_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("f")
    with pytest.raises(NtkscopeInputError, match="not a directory"), \
            atomic_open(tmp_path / "file" / "x.txt") as fh:
        fh.write("x")  # pragma: no cover - never reached
    blocker = tmp_path / "dir.txt"
    blocker.mkdir()
    with pytest.raises(NtkscopeInputError, match="cannot write"), atomic_open(blocker) as fh:
        fh.write("x")
    assert blocker.is_dir() and not debris(tmp_path)


@pytest.mark.parametrize("existing", [False, True])
def test_atomic_savefig_failure_mid_write(tmp_path: Path, existing: bool,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    from ntkscope.plotting import plt

    target = tmp_path / "fig.png"
    if existing:
        target.write_bytes(OLD)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    monkeypatch.setattr(Figure, "savefig", partial_then_raise(Figure.savefig))
    with pytest.raises(Boom):
        atomic_savefig(fig, target)
    plt.close(fig)
    assert_clean(target, OLD if existing else None)


# ---------------------------------------------------------------------------------------------
# The writers of the package


def test_write_csv_refuses_nan_and_keeps_old_file(tmp_path: Path) -> None:
    from ntkscope.plotting import write_csv

    target = tmp_path / "t.csv"
    target.write_bytes(OLD)
    rows = [(1.0, 2.0)] * 1000 + [(float("nan"), 1.0)]
    with pytest.raises(ValueError, match="non-finite"):
        write_csv(target, ("a", "b"), rows)
    assert_clean(target, OLD)


def test_save_figure_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    from ntkscope.plotting import plt, save_figure

    monkeypatch.setattr(Figure, "savefig", partial_then_raise(Figure.savefig))
    fig, _ = plt.subplots()
    with pytest.raises(Boom):
        save_figure(fig, tmp_path / "x.png")
    plt.close(fig)
    assert_clean(tmp_path / "x.png")


NTK = ["ntk", "--activation", "relu", "--sigma-w2", "2", "--sigma-b2", "0.1", "--depth", "2",
       "--width", "4", "--samples", "3", "--input-dim", "5"]


@pytest.mark.parametrize("existing", [False, True])
def test_cli_ntk_kernel_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    existing: bool) -> None:
    target = tmp_path / "k.npy"
    if existing:
        target.write_bytes(OLD)
    monkeypatch.setattr(np, "save", partial_then_raise(np.save))
    with pytest.raises(Boom):
        main([*NTK, "--out", str(target)])
    assert_clean(target, OLD if existing else None)


def test_cli_ntk_params_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "p.npz"
    monkeypatch.setattr(np, "savez", partial_then_raise(np.savez))
    with pytest.raises(Boom):
        main([*NTK, "--save-params", str(target)])
    assert_clean(target)


def test_cli_ntk_outputs_are_whole(tmp_path: Path) -> None:
    k, p = tmp_path / "k.npy", tmp_path / "p.npz"
    assert main([*NTK, "--out", str(k), "--save-params", str(p)]) == 0
    assert np.load(k).shape == (3, 3)
    with np.load(p) as z:
        assert z["X"].shape == (3, 5) and z["W1"].shape == (4, 5)
    assert not debris(tmp_path)


def test_cli_ntk_bad_input_writes_nothing(tmp_path: Path) -> None:
    """Validation happens before any file is opened."""
    target = tmp_path / "k.npy"
    bad = [*NTK[:-1], "0", "--out", str(target)]  # --input-dim 0
    assert main(bad) == 2
    assert_clean(target)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "s.sqlite")
    for seed in range(3):
        cfg = {"seed": seed, "sw2": 1.5}
        s.put_done(cell_key("demo", cfg), "demo", cfg, {"mean": 0.5 + seed}, np.ones(2), 0.1)
    return s


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("existing", [False, True])
def test_export_failure_mid_write(store: Store, tmp_path: Path, fmt: str, existing: bool,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / f"e.{fmt}"
    if existing:
        target.write_bytes(OLD)
    if fmt == "csv":
        import csv

        def broken_rows(self: csv.DictWriter, rows: object) -> None:
            self.writerow({"key": "half"})
            raise Boom

        monkeypatch.setattr(csv.DictWriter, "writerows", broken_rows)
    else:
        import pyarrow.parquet as pq

        monkeypatch.setattr(pq, "write_table", lambda table, fh, **kw: partial_then_raise(
            pq.write_table)(fh))
    with pytest.raises(Boom):
        export_table(store, target, fmt)
    assert_clean(target, OLD if existing else None)
    store.close()


def test_cli_export_failure(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import csv

    store.close()
    target = tmp_path / "out.csv"
    def broken_header(self: csv.DictWriter) -> None:
        self.writer.writerow(["partial"])
        raise Boom

    monkeypatch.setattr(csv.DictWriter, "writeheader", broken_header)
    with pytest.raises(Boom):
        main(["results", "export", "--store", str(tmp_path / "s.sqlite"), "--format", "csv",
              "--out", str(target)])
    assert_clean(target)


@pytest.mark.parametrize("existing", [False, True])
def test_theory_figure_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               existing: bool) -> None:
    """``ntkscope figure 5``: a failing savefig leaves no PNG (an old one is kept)."""
    from matplotlib.figure import Figure

    png = tmp_path / "fig5.png"
    if existing:
        png.write_bytes(OLD)
    monkeypatch.setattr(Figure, "savefig", partial_then_raise(Figure.savefig))
    with pytest.raises(Boom):
        main(["figure", "5", "--out", str(tmp_path)])
    assert_clean(png, OLD if existing else None)
    csv_path = tmp_path / "fig5.csv"  # written (whole) before the PNG
    assert csv_path.read_text().count("\n") > 50


def test_train_plot_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    png = tmp_path / "loss.png"
    monkeypatch.setattr(Figure, "savefig", partial_then_raise(Figure.savefig))
    with pytest.raises(Boom):
        main(["train", "--activation", "relu", "--sigma-w2", "2", "--sigma-b2", "0",
              "--depth", "1", "--width", "3", "--dataset", "gaussian", "--samples", "3",
              "--max-steps", "2", "--quiet", "--plot", str(png)])
    assert_clean(png)


def test_subset_write_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    from ntkscope.datasets.subset import write_npz

    target = tmp_path / "sub.npz"
    target.write_bytes(OLD)
    real = zipfile.ZipFile.writestr
    calls = []

    def broken(self: zipfile.ZipFile, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:  # the first array is already in the archive
            raise Boom
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "writestr", broken)
    with pytest.raises(Boom):
        write_npz(target, {"a": np.arange(5), "b": np.ones(3), "c": np.zeros(2)})
    assert len(calls) == 2
    assert_clean(target, OLD)


def test_check_html_report_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ntkscope check --html``: a failure while writing leaves no page (an old one is kept)."""
    from ntkscope import report

    target = tmp_path / "r.html"
    target.write_bytes(OLD)
    real = report.atomic_open

    def failing_open(path: object, mode: str = "w"):  # type: ignore[no-untyped-def]
        class Handle:
            def __init__(self, cm: object) -> None:
                self.cm = cm

            def __enter__(self) -> object:
                fh = self.cm.__enter__()  # type: ignore[attr-defined]

                class HalfWriter:  # writes the first 100 bytes of the page, then fails
                    def write(self, data: bytes) -> None:
                        fh.write(data[:100])
                        raise Boom

                return HalfWriter()

            def __exit__(self, *exc: object) -> object:
                return self.cm.__exit__(*exc)  # type: ignore[attr-defined]

        return Handle(real(path, mode))

    monkeypatch.setattr(report, "atomic_open", failing_open)
    with pytest.raises(Boom):
        main(["check", "--activation", "relu", "--sigma-w2", "2", "--sigma-b2", "0",
              "--depth", "1", "--width", "3", "--dataset", "gaussian", "--samples", "3",
              "--inits", "4", "--train-steps", "1", "--html", str(target)])
    assert_clean(target, OLD)
