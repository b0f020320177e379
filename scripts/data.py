"""Verify (and fetch, when online) every dataset the tables use; print one table; exit 1 when any is missing.

    python scripts/data.py [--datasets imdb,amazon] [--stages table4,table6] [--root DIR] [--preset quick]
                           [--no-fetch] [--no-rows]

``make data`` runs it (``DATASETS=imdb,amazon``, ``DATA_ROOT=...``). Paths and URLs come from the data configs and
the loaders (fastformer/data/catalog.py). Offline, each missing dataset is named with its URL and the exact path to
place it at. scripts/reproduce.py runs it per stage before launching that stage's runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT))

from fastformer.data.catalog import DATASETS, check_dataset, format_table, stage_datasets  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="", help=f"comma-separated subset of {list(DATASETS)} (default: all)")
    ap.add_argument("--stages", default="", help="check the datasets of these sweep stages (configs/sweep/)")
    ap.add_argument("--root", default=None, help="data root (default: DATA_ROOT, else <project>/data)")
    ap.add_argument("--preset", default="quick", help="preset whose data configs to check (quick | paper)")
    ap.add_argument("--no-fetch", action="store_true", help="only look; never download")
    ap.add_argument("--no-rows", action="store_true", help="skip counting rows (faster)")
    ap.add_argument("--quiet", action="store_true", help="print only the missing datasets' messages")
    ap.add_argument("--json", action="store_true", help="print one JSON object per dataset instead of the table")
    ap.add_argument("--override", action="append", default=[], help="extra Hydra override (repeatable)")
    args = ap.parse_args(argv)
    names = [n for n in args.datasets.split(",") if n]
    for stage in (s for s in args.stages.split(",") if s):
        names += [n for n in stage_datasets(stage) if n not in names]
    if not args.datasets and not args.stages:
        names = list(DATASETS)
    bad = [n for n in names if n not in DATASETS]
    if bad:
        ap.error(f"unknown dataset(s) {bad}; known: {list(DATASETS)}")
    t0 = time.perf_counter()
    statuses = [check_dataset(n, root=args.root, preset=args.preset, fetch=not args.no_fetch,
                              count_rows=not args.no_rows, overrides=args.override) for n in names]
    missing = [s for s in statuses if not s.present]
    if args.json:
        for s in statuses:
            print(json.dumps(dataclasses.asdict(s)))
        return 1 if missing else 0
    if not args.quiet:
        root = Path(args.root or os.environ.get("DATA_ROOT") or ROOT / "data").resolve()
        print(f"data root {root} (preset {args.preset}; {time.perf_counter() - t0:.1f} s)")
        print(format_table(statuses))
    for s in missing:
        print(f"MISSING {s.dataset}: {s.message}", file=sys.stderr if args.quiet else sys.stdout)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
