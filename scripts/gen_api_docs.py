#!/usr/bin/env python3
"""Generate ``docs/api.md``, the API reference, from the docstrings (standard library only).

Every public module of :mod:`ntkscope` (no leading underscore in its dotted name) is listed
with its docstring, then its public classes (signature, docstring, public methods and
properties) and functions (signature, docstring). A module with ``__all__`` documents those
names; otherwise the public names it defines itself. Names a module re-exports from another
documented module are listed as links only. The output is deterministic (sorted modules and
names, no memory addresses), and ``tests/test_properties.py::test_api_docs_are_up_to_date``
checks that ``docs/api.md`` matches it.

    python scripts/gen_api_docs.py            # rewrite docs/api.md
    python scripts/gen_api_docs.py --check    # exit 1 if docs/api.md is stale
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "api.md"
PACKAGE = "ntkscope"
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")

HEADER = """# API reference

Generated from the docstrings by `python scripts/gen_api_docs.py` (do not edit by hand;
`tests/test_properties.py` fails when this file is stale). Conventions of every formula:
[conventions.md](conventions.md); the command line: [guide.md](guide.md).
"""


def public_modules() -> list[ModuleType]:
    """``ntkscope`` and every submodule without a ``_``-prefixed part, sorted by name."""
    sys.path.insert(0, str(ROOT / "src"))
    package = importlib.import_module(PACKAGE)
    names = {PACKAGE}
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{PACKAGE}."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.add(info.name)
    modules = []
    for name in sorted(names):
        try:
            modules.append(importlib.import_module(name))
        except ImportError as exc:  # an optional dependency is missing: say so, stay stable
            print(f"gen_api_docs: skipping {name}: {exc}", file=sys.stderr)
    return modules


class _Text:
    """An annotation written as its source text (``str | None``, not ``'str | None'``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _plain(annotation: Any) -> Any:
    return _Text(annotation) if isinstance(annotation, str) else annotation


def signature(obj: Any) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    sig = sig.replace(
        parameters=[p.replace(annotation=_plain(p.annotation)) for p in sig.parameters.values()],
        return_annotation=_plain(sig.return_annotation),
    )
    return _ADDRESS.sub("", str(sig))


def doc(obj: Any) -> str:
    text = inspect.getdoc(obj) or ""
    return _ADDRESS.sub("", text).strip()


def anchor(name: str) -> str:
    return name.lower().replace(".", "")


def members(module: ModuleType) -> list[tuple[str, Any]]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, obj in vars(module).items()
                 if not n.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
                 and getattr(obj, "__module__", None) == module.__name__]
    out = []
    for name in sorted(set(names)):
        obj = getattr(module, name, None)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
            out.append((name, obj))
    return out


def class_members(cls: type) -> list[tuple[str, str, str]]:
    """``(name, signature or '', docstring)`` of the public methods and properties ``cls``
    itself defines."""
    out = []
    for name, raw in sorted(vars(cls).items()):
        if name.startswith("_"):
            continue
        if isinstance(raw, property):
            out.append((name, "", doc(raw.fget) if raw.fget else ""))
        elif isinstance(raw, (staticmethod, classmethod)):
            out.append((name, signature(raw.__func__), doc(raw.__func__)))
        elif inspect.isfunction(raw):
            out.append((name, signature(raw), doc(raw)))
    return out


def block(text: str) -> list[str]:
    return [text, ""] if text else []


def render() -> str:
    """The whole of ``docs/api.md``."""
    modules = public_modules()
    documented = {m.__name__ for m in modules}
    lines = [HEADER, "## Modules", ""]
    lines += [f"- [`{m.__name__}`](#{anchor(m.__name__)})" for m in modules]
    lines.append("")
    for module in modules:
        lines += [f"## {module.__name__}", ""]
        lines += block(doc(module))
        for name, obj in members(module):
            home = getattr(obj, "__module__", module.__name__)
            if home != module.__name__ and home in documented:
                lines += [f"- `{name}`: see [`{home}`](#{anchor(home)})", ""]
                continue
            kind = "class" if inspect.isclass(obj) else "def"
            lines += [f"### `{kind} {module.__name__}.{name}{signature(obj)}`", ""]
            lines += block(doc(obj))
            if inspect.isclass(obj):
                for mname, msig, mdoc in class_members(obj):
                    label = f"{name}.{mname}{msig}" if msig else f"{name}.{mname} (property)"
                    lines += [f"#### `{label}`", ""]
                    lines += block(mdoc)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is stale")
    parser.add_argument("--out", type=Path, default=OUTPUT, help="output file (docs/api.md)")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run python scripts/gen_api_docs.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
