"""Migrate run outcomes to the row naming of 2026-12-07 (issue #21: one name per switch, one meaning per name).

    python scripts/migrate_rows.py logs/multiruns            # every run dir below; a second pass moves nothing
    python scripts/migrate_rows.py logs/multiruns --dry-run  # print what would move

What changed, and what this does to each run dir holding metrics.json / failed.json:
- the record field and config key ``variant`` (the table row) is now ``row`` (``variant`` is left to the Fastformer
  layer's paper / official form); the field is renamed in the record;
- ablation rows are keyed like every other row, ``<dataset>/<row>`` (was ``ablation/<dataset>/<row>``), and the probe
  rows of the redundancy variants take the ablation names (``fastformer_global_key_k`` -> ``global_key_from_k``,
  ``fastformer_no_key_branch`` -> ``no_key_branch``, ...): the run dir moves (with checkpoints, W&B files and
  interaction.json) and the record's ``experiment`` and ``row`` follow.
A dir whose target exists already is left in place and reported (nothing is overwritten). Records are rewritten
atomically. A run still training in a moved dir resumes under its new key only if its checkpoint's config hash
matches: this script deletes ``checkpoints/last.pt`` of moved dirs without metrics.json (the run starts over).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastformer.utils import atomic_write_text  # noqa: E402

PROBE_ROWS = {"fastformer_no_output_transform": "no_output_transform", "fastformer_global_key_k": "global_key_from_k",
              "fastformer_no_key_branch": "no_key_branch", "fastformer_mean_pooling": "mean_pooling",
              "fastformer_no_query_residual": "no_query_residual"}


def new_key(experiment: str) -> str:
    """The run-dir key (experiment_name) under the new naming."""
    parts = experiment.split("/")
    if parts[0] == "ablation" and len(parts) == 3:
        parts = parts[1:]
    parts[-1] = PROBE_ROWS.get(parts[-1], parts[-1])
    return "/".join(parts)


def migrate_record(path: Path, experiment: str) -> bool:
    rec = json.loads(path.read_text())
    old = dict(rec)
    if "variant" in rec:
        rec = {("row" if k == "variant" else k): v for k, v in rec.items()}
    if rec.get("row") in PROBE_ROWS:
        rec["row"] = PROBE_ROWS[rec["row"]]
    if rec.get("experiment"):
        rec["experiment"] = experiment
    if rec != old:
        atomic_write_text(path, json.dumps(rec, indent=2) + "\n")
    return rec != old


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="+", type=Path, help="sweep roots, e.g. logs/multiruns (every preset below it)")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    moved = rewritten = kept = 0
    for root in args.roots:
        records = sorted({p for name in ("metrics.json", "failed.json") for p in root.rglob(name)})
        for rec_path in records:
            run_dir = rec_path.parent                      # <sweep root>/<experiment_name>/seed<k>
            data = json.loads(rec_path.read_text())
            exp = data.get("experiment")
            if not exp or not str(run_dir.parent).endswith(exp):
                continue                                    # a dir this layout does not name (ad-hoc runs)
            target_exp = new_key(exp)
            sweep_root = Path(str(run_dir.parent)[: -len(exp)])
            target = sweep_root / target_exp / run_dir.name
            if target != run_dir:
                if target.exists():
                    print(f"kept {run_dir}: {target} exists", file=sys.stderr)
                    kept += 1
                    continue
                print(f"move {run_dir} -> {target}")
                moved += 1
                if args.dry_run:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(run_dir), str(target))
                if not (target / "metrics.json").exists():
                    (target / "checkpoints" / "last.pt").unlink(missing_ok=True)
                parent = run_dir.parent  # drop the emptied dirs up to the sweep root (ablation/<ds>/<row>)
                while parent != sweep_root and parent.exists() and not any(parent.iterdir()):
                    parent.rmdir()
                    parent = parent.parent
            if not args.dry_run:
                for name in ("metrics.json", "failed.json"):
                    if (target / name).exists():
                        rewritten += migrate_record(target / name, target_exp)
    print(f"migrate_rows: {moved} run dirs moved, {rewritten} records rewritten, {kept} kept in place"
          + (" (dry run)" if args.dry_run else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
