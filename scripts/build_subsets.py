#!/usr/bin/env python
"""Build the MNIST and Fashion-MNIST subsets shipped in ``src/ntkscope/data``.

Deterministic: the same idx files give byte-identical ``.npz`` files (see
:mod:`ntkscope.datasets.subset`). The source files are verified against their SHA-256
checksums first.

    .venv/bin/python scripts/build_subsets.py \
        --mnist ../shared/datasets/mnist --fashion-mnist /usr/share/datasets/fashion-mnist

``--check`` rebuilds into a temporary directory and compares with the shipped files instead.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from ntkscope.datasets.specs import IMAGE_SETS
from ntkscope.datasets.subset import build_subset

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCES = {
    "mnist": REPO.parent / "shared" / "datasets" / "mnist",
    "fashion-mnist": Path("/usr/share/datasets/fashion-mnist"),
}
DATA_DIR = REPO / "src" / "ntkscope" / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in DEFAULT_SOURCES.items():
        parser.add_argument(f"--{name}", type=Path, default=default, metavar="DIR",
                            help=f"directory with the four {name} idx files (default {default})")
    parser.add_argument("--out", type=Path, default=DATA_DIR, metavar="DIR",
                        help=f"where the subsets go (default {DATA_DIR})")
    parser.add_argument("--check", action="store_true",
                        help="rebuild in a temporary directory and compare with --out")
    args = parser.parse_args(argv)
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) if args.check else args.out
        target.mkdir(parents=True, exist_ok=True)
        for name, spec in IMAGE_SETS.items():
            source = getattr(args, name.replace("-", "_"))
            out = build_subset(spec, source, target / spec.subset_file)
            if args.check:
                same = filecmp.cmp(out, args.out / spec.subset_file, shallow=False)
                print(f"{spec.subset_file}: {'identical' if same else 'DIFFERS'}")
                status |= not same
            else:
                out.chmod(0o644)
                print(f"{out}: {out.stat().st_size:,} bytes from {source}")
    return status


if __name__ == "__main__":
    sys.exit(main())
