"""Regenerate results/ tables from run outputs only (never by hand).

    python scripts/make_tables.py [--preset quick] [--runs logs/multiruns/quick] [--out results] [--tables table4,...]
                                  [--force]

A table that has finished cells is never replaced by one with fewer (e.g. rebuilt from an empty or failed sweep):
that table is kept as it is, the reason printed, and the exit code is 1. ``--force`` replaces it anyway.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# table name -> builder module in fastformer/results/ (each exposes build(runs_root, out_dir, preset) -> Path)
TABLES = {
    "table4": "fastformer.results.table4",
    "table5": "fastformer.results.table5",
    "table6": "fastformer.results.table6",
    "ablations": "fastformer.results.ablations",
    "probes": "fastformer.results.probes",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="quick", help="preset whose runs to tabulate (quick | cpu | paper)")
    ap.add_argument("--runs", default=None, help="root of the run dirs (default: logs/multiruns/<preset>)")
    ap.add_argument("--out", default=str(ROOT / "results"), help="output folder")
    ap.add_argument("--tables", default=",".join(TABLES), help=f"comma-separated subset of {list(TABLES)}")
    ap.add_argument("--force", action="store_true",
                    help="replace a table even when the new one has fewer finished cells than the existing one")
    args = ap.parse_args(argv)
    from fastformer.results import common
    common.FORCE = args.force
    kept = []
    runs = Path(args.runs or ROOT / "logs" / "multiruns" / args.preset)
    for name in args.tables.split(","):
        if name not in TABLES:
            ap.error(f"unknown table {name!r}; known: {list(TABLES)}")
        try:
            path = importlib.import_module(TABLES[name]).build(runs, args.out, args.preset)
        except common.TableRegressionError as err:
            print(f"{name}: {err}", file=sys.stderr)
            kept.append(name)
            continue
        print(f"wrote {path}")
    return 1 if kept else 0


if __name__ == "__main__":
    sys.exit(main())
