"""Regenerate results/ tables from run outputs only (never by hand).

    python scripts/make_tables.py [--preset quick] [--runs logs/multiruns/quick] [--out results] [--tables table4,...]
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
    ap.add_argument("--preset", default="quick", help="preset whose runs to tabulate (quick | paper)")
    ap.add_argument("--runs", default=None, help="root of the run dirs (default: logs/multiruns/<preset>)")
    ap.add_argument("--out", default=str(ROOT / "results"), help="output folder")
    ap.add_argument("--tables", default=",".join(TABLES), help=f"comma-separated subset of {list(TABLES)}")
    args = ap.parse_args(argv)
    runs = Path(args.runs or ROOT / "logs" / "multiruns" / args.preset)
    for name in args.tables.split(","):
        if name not in TABLES:
            ap.error(f"unknown table {name!r}; known: {list(TABLES)}")
        path = importlib.import_module(TABLES[name]).build(runs, args.out, args.preset)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
