"""``ntkscope results``: look into a results store (list, show, export)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ntkscope.store import DEFAULT_STORE_PATH, EXPORT_FORMATS, STATUSES, Store, export_table

_CONFIG_WIDTH = 72


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("results", help="list, show or export the cells of a results store",
                       description="Look into a results store written by sweeps.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--store", default=str(DEFAULT_STORE_PATH), metavar="PATH",
                       help=f"the results store (default {DEFAULT_STORE_PATH})")

    q = actions.add_parser("list", help="one line per cell: kind, key, config, status, time",
                           description="One line per cell: kind, key prefix, config (the "
                           "parameters that vary between the listed cells first), status, "
                           "wall time and, for a failed cell, the error.")
    common(q)
    q.add_argument("--kind", metavar="K", help="only cells of this kind")
    q.add_argument("--status", choices=STATUSES, help="only done or only failed cells")
    q.set_defaults(func=_list)

    q = actions.add_parser("show", help="one cell's full row as JSON")
    common(q)
    q.add_argument("key", metavar="KEY", help="the cell key, or a unique prefix of it")
    q.set_defaults(func=_show)

    q = actions.add_parser("export", help="write a flat table (config + summary columns)")
    common(q)
    q.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="csv or parquet")
    q.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    q.add_argument("--kind", metavar="K", help="only cells of this kind")
    q.set_defaults(func=_export)


def _open(args: argparse.Namespace) -> Store:
    return Store(args.store, create=False)


def _list(args: argparse.Namespace) -> int:
    with _open(args) as store:
        records = list(store.records(kind=args.kind, status=args.status))
    # Parameters that differ between the listed cells first: they tell the rows apart.
    seen: dict[str, set[str]] = {}
    for rec in records:
        for k, v in rec.config.items():
            seen.setdefault(k, set()).add(_short(v))
    varying = {k for k, values in seen.items() if len(values) > 1 or len(records) == 1}
    try:
        for rec in records:
            items = sorted(rec.config.items(), key=lambda kv: (kv[0] not in varying, kv[0]))
            config = " ".join(f"{k}={_short(v)}" for k, v in items)
            if len(config) > _CONFIG_WIDTH:
                config = config[: _CONFIG_WIDTH - 3] + "..."
            wall = "-" if rec.wall_time is None else f"{rec.wall_time:.3g}s"
            line = f"{rec.kind}  {rec.key[:12]}  {config}  {rec.status}  {wall}"
            if rec.error:
                line += f"  {rec.error.splitlines()[0]}"
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:  # `ntkscope results list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    print(f"{len(records)} cells", file=sys.stderr)
    return 0


def _short(value: object) -> str:
    return json.dumps(value, separators=(",", ":")) if not isinstance(value, str) else value


def _show(args: argparse.Namespace) -> int:
    with _open(args) as store:
        rec = store.find(args.key)
    json.dump(rec.to_json(), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
    return 0


def _export(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    with _open(args) as store:
        n = export_table(store, args.out, args.format, kind=args.kind)
    print(f"wrote {n} cells to {args.out} ({time.perf_counter() - start:.2f} s)",
          file=sys.stderr)
    return 0
