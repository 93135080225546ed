"""``ntkscope data``: where the data sets come from, and downloading the full files.

``ntkscope data info`` shows, per image data set and split, whether the full idx files are
found (and where) or the shipped subset is used; ``ntkscope data download mnist`` fetches the
full files from the canonical mirrors into the user cache (verified, written atomically).
"""

from __future__ import annotations

import argparse
import sys

from ntkscope.cli import common
from ntkscope.datasets import (
    DATA_ENV,
    IMAGE_SETS,
    dataset_name,
    download_dataset,
)
from ntkscope.datasets.loading import image_split
from ntkscope.datasets.specs import SPLITS
from ntkscope.validation import NtkscopeInputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="show where the data sets come from; download MNIST",
                       description="Where the image data sets are read from, and downloading "
                       "their full files into the user cache.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    q = actions.add_parser("info", help="full files or shipped subset, per data set and split",
                           description="For each image data set and split: the full files "
                           f"found (--data-dir, ${DATA_ENV}, user cache, system directories) "
                           "or the shipped subset; the files are verified.")
    q.add_argument("names", nargs="*", metavar="NAME",
                   help=f"data sets (default all: {', '.join(IMAGE_SETS)})")
    q.add_argument("--data-dir", metavar="DIR", help="directory with the full idx files")
    common.add_json_arg(q)
    q.set_defaults(func=_info)

    q = actions.add_parser("download", help="download the full idx files (verified)",
                           description="Download the four idx files from the canonical "
                           "mirrors (tried in order), verify their SHA-256 checksums and write "
                           "them atomically; files already present and intact are kept.")
    q.add_argument("name", metavar="NAME", help=f"data set: {', '.join(IMAGE_SETS)}")
    q.add_argument("--dest", metavar="DIR",
                   help="target directory (default: <user cache>/NAME, searched by the loaders)")
    q.add_argument("--mirror", action="append", metavar="URL",
                   help="base URL to fetch <URL>/<file>.gz from; repeat to try several in order "
                   "(default: the canonical mirrors)")
    q.add_argument("--timeout", type=common.FLOAT, default=60.0, metavar="SECONDS",
                   help="seconds per connection attempt (default 60)")
    q.set_defaults(func=_download)


def _info(args: argparse.Namespace) -> int:
    names = [dataset_name(n) for n in args.names] or list(IMAGE_SETS)
    for name in names:
        if name not in IMAGE_SETS:
            raise NtkscopeInputError(f"names: {name} is synthetic (no files)")
    rows = {
        f"{name} {split}": image_split(IMAGE_SETS[name], split, args.data_dir).source
        for name in names for split in SPLITS
    }
    if args.json:
        common.print_json(rows)
    else:
        common.print_table(list(rows.items()), title="Data sources (verified)")
    return 0


def _download(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise NtkscopeInputError(f"timeout: must be > 0, got {args.timeout:g}")
    dest = download_dataset(args.name, args.dest, args.mirror, timeout=args.timeout,
                            log=lambda line: print(line, file=sys.stderr))
    print(dest)
    return 0
