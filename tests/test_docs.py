"""docs/conventions.md stays a complete spec: every section the code and the docs cite exists,
every paper equation has a row in its table, and every ``ntkscope.*`` name it gives imports."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONVENTIONS = REPO / "docs" / "conventions.md"
TEXT = CONVENTIONS.read_text(encoding="utf-8")

#: A dotted name under ``ntkscope`` (module, function, class or attribute).
DOTTED = re.compile(r"(?<![\w.])ntkscope(?:\.[A-Za-z_]\w*)+")
#: A citation of the conventions: "CONVENTIONS section 6", "CONVENTIONS sections 1, 3 and 6",
#: "CONVENTIONS sections 4-5", "CONVENTIONS 5", "conventions.md section 2" (across line breaks).
CITATION = re.compile(
    r"(?:CONVENTIONS|conventions\.md),?\s+(?:sections?\s+)?(\d+(?:\s*(?:,|-|–|and|to)\s*\d+)*)\b"
)
#: A numbered section heading of docs/conventions.md: "## 6. NTK variance ...".
HEADING = re.compile(r"^## (\d+)\. \S", re.MULTILINE)
#: The paper's results that the table must map to code.
PAPER_ITEMS = [*(f"eq. {n}" for n in range(1, 11)), "Lemma 5.1", "Lemma 5.2", "Theorem 5.3",
               "Appendix E"]


def _resolve(name: str) -> object:
    """``import`` the longest importable module prefix of ``name``, then ``getattr`` the rest.

    Only a missing module on the path of ``name`` itself moves on to a shorter prefix: an
    import error raised inside an existing module propagates (an import bug fails, it does not
    hide)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj: object = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not exc.name or not f"{module_name}.".startswith(f"{exc.name}."):
                raise
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(name)


def _cited_sections() -> dict[int, set[str]]:
    """Section number -> the files that cite it (src, tests, bench, docs, README)."""
    files = [*(REPO / "src").rglob("*.py"), *(REPO / "tests").rglob("*.py"),
             *(REPO / "bench").rglob("*.py"), *(REPO / "bench").rglob("*.md"),
             *(REPO / "docs").glob("*.md"), REPO / "README.md"]
    cited: dict[int, set[str]] = {}
    for path in files:
        if path.resolve() == Path(__file__).resolve():  # its examples are not citations
            continue
        text = path.read_text(encoding="utf-8")
        for match in CITATION.finditer(text):
            numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
            if re.search(r"\d\s*[-–]\s*\d", match.group(1)):  # a range "4-5"
                numbers = list(range(numbers[0], numbers[-1] + 1))
            for n in numbers:
                cited.setdefault(n, set()).add(str(path.relative_to(REPO)))
    return cited


def _table_rows() -> list[list[str]]:
    start = TEXT.index("## Paper equations and the code that implements them")
    rows = [ln for ln in TEXT[start:].splitlines() if ln.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def test_every_cited_section_exists() -> None:
    headings = {int(n) for n in HEADING.findall(TEXT)}
    cited = _cited_sections()
    assert {1, 3, 6, 7, 8} <= set(cited), "the citation pattern no longer finds the citations"
    missing = {n: sorted(where) for n, where in cited.items() if n not in headings}
    assert not missing, f"cited but not a section of docs/conventions.md: {missing}"


def test_sections_are_numbered_in_order() -> None:
    numbers = [int(n) for n in HEADING.findall(TEXT)]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert len(numbers) >= 9, numbers


def test_table_covers_every_paper_equation() -> None:
    rows = _table_rows()
    assert all(len(row) == 3 for row in rows), [row for row in rows if len(row) != 3]
    papers = " ; ".join(row[0] for row in rows)
    for item in PAPER_ITEMS:
        assert re.search(rf"\b{re.escape(item)}\b", papers), f"no row for the paper's {item}"
    for row in rows:
        assert DOTTED.search(row[2]), f"row without a function: {row}"


DOTTED_NAMES = sorted(set(DOTTED.findall(TEXT)))


def test_conventions_names_are_found() -> None:
    assert len(DOTTED_NAMES) >= 30, DOTTED_NAMES


@pytest.mark.parametrize("name", DOTTED_NAMES)
def test_conventions_name_resolves(name: str) -> None:
    """Every ``ntkscope.*`` name in docs/conventions.md is importable (a newcomer's one hop)."""
    try:
        _resolve(name)
    except AttributeError as exc:
        pytest.fail(f"docs/conventions.md names {name}, which does not exist: {exc}")
