"""``ntkscope data``: where the data sets come from, and downloading the full files.

``ntkscope data info`` shows, per image data set and split, whether the full idx files are
found (and where) or the shipped subset is used (CIFAR: the archive or its unpacked folder, or
"not found"); ``ntkscope data download mnist`` fetches the full files from the canonical
mirrors into the user cache (verified, written atomically); ``ntkscope data download cifar10``
the archive (verified by MD5 and SHA-256, unpacked atomically).
"""

from __future__ import annotations

import argparse
import sys

from ntkscope.cli import common
from ntkscope.datasets import (
    ARCHIVE_SETS,
    DATA_ENV,
    IMAGE_SETS,
    dataset_name,
    download_dataset,
)
from ntkscope.datasets.cifar import locate_archive_set
from ntkscope.datasets.loading import image_spec, image_split
from ntkscope.datasets.specs import SPLITS
from ntkscope.validation import NtkscopeInputError


def register(sub: argparse._SubParsersAction) -> None:
    names = [*IMAGE_SETS, *ARCHIVE_SETS]
    p = sub.add_parser("data", help="show where the data sets come from; download MNIST, CIFAR",
                       description="Where the image data sets are read from, and downloading "
                       "their full files into the user cache.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    q = actions.add_parser("info", help="full files or shipped subset, per data set and split",
                           description="For each image data set and split: the full files "
                           f"found (--data-dir, ${DATA_ENV}, user cache, system directories) "
                           "or the shipped subset; the files are verified.")
    q.add_argument("names", nargs="*", metavar="NAME",
                   help=f"data sets (default all: {', '.join(names)})")
    q.add_argument("--data-dir", metavar="DIR",
                   help="directory with the full idx files, or the CIFAR archive / its folder")
    common.add_json_arg(q)
    q.set_defaults(func=_info)

    q = actions.add_parser("download", help="download the full data files (verified)",
                           description="Download the four idx files from the canonical "
                           "mirrors (tried in order), verify their SHA-256 checksums and write "
                           "them atomically; files already present and intact are kept. CIFAR: "
                           "the python-version archive, verified by MD5 and SHA-256 and "
                           "unpacked atomically into DEST/cifar-10-batches-py (URL: --mirror, "
                           "else $NTKSCOPE_CIFAR10_URL / $NTKSCOPE_CIFAR100_URL, else "
                           "www.cs.toronto.edu).")
    q.add_argument("name", metavar="NAME", help=f"data set: {', '.join(names)}")
    q.add_argument("--dest", metavar="DIR",
                   help="target directory (default: <user cache>/NAME, searched by the loaders)")
    q.add_argument("--mirror", action="append", metavar="URL",
                   help="base URL to fetch <URL>/<file>.gz from (CIFAR: the archive's URL, or a "
                   "base URL); repeat to try several in order (default: the canonical mirrors)")
    q.add_argument("--timeout", type=common.FLOAT, default=60.0, metavar="SECONDS",
                   help="seconds per connection attempt (default 60)")
    q.set_defaults(func=_download)


def _info(args: argparse.Namespace) -> int:
    names = [dataset_name(n) for n in args.names] or [*IMAGE_SETS, *ARCHIVE_SETS]
    for name in names:
        if name == "gaussian":
            raise NtkscopeInputError(f"names: {name} is synthetic (no files)")
    rows = {f"{name} {split}": _source(name, split, args.data_dir)
            for name in names for split in SPLITS}
    if args.json:
        common.print_json(rows)
    else:
        common.print_table(list(rows.items()), title="Data sources (verified)")
    return 0


def _source(name: str, split: str, data_dir: str | None) -> str:
    """Where ``split`` of ``name`` is read from (verified), or how to get a missing CIFAR."""
    spec = image_spec(name)
    if name in ARCHIVE_SETS and locate_archive_set(ARCHIVE_SETS[name], data_dir) is None:
        return f"not found (`ntkscope data download {name}`, or --data-dir / ${DATA_ENV})"
    return image_split(spec, split, data_dir).source


def _download(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise NtkscopeInputError(f"timeout: must be > 0, got {args.timeout:g}")
    dest = download_dataset(args.name, args.dest, args.mirror, timeout=args.timeout,
                            log=lambda line: print(line, file=sys.stderr), progress=True)
    print(dest)
    return 0
