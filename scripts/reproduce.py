"""Reproduce the paper's tables: run each stage's Hydra multirun sweep, then regenerate results/ from run outputs.

    python scripts/reproduce.py [preset=quick|paper] [stages=[table4]] [overrides=[trainer=gpu]]

Sweeps write to logs/multiruns/<preset>/<experiment>/seed<k>/ and skip finished runs, so re-running resumes. A failed
job does not stop the others: it is written to its failed.json, shown as "failed" in the table and listed at the end
(exit code 1).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from fastformer.results.common import load_runs  # noqa: E402

# stage -> tables it feeds (scripts/make_tables.py names)
STAGE_TABLES = {"table4": ["table4"], "table5": ["table5"], "table6": ["table6"], "ablations": ["ablations", "table4"],
                "probes": ["probes"], "probes_recall": ["probes"]}


def run_stage(stage: str, cfg: DictConfig) -> int:
    per_stage = (cfg.stage_overrides.get(cfg.preset) or {}).get(stage, [])
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "-m", f"+sweep={stage}", f"preset={cfg.preset}",
           f"seed={cfg.seeds[cfg.preset]}", f"logger={cfg.logger}", f"hydra.sweep.dir={cfg.runs_root}", *per_stage,
           *cfg.overrides]
    print(f"[reproduce] {stage}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, cwd=ROOT)
    print(f"[reproduce] {stage}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
    return rc


@hydra.main(version_base="1.3", config_path="../configs/reproduce", config_name="reproduce")
def main(cfg: DictConfig) -> None:
    unknown = [s for s in cfg.stages if s not in STAGE_TABLES]
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}; known: {list(STAGE_TABLES)} (configs/reproduce/reproduce.yaml)")
    if cfg.preset not in cfg.seeds:
        raise SystemExit(f"preset={cfg.preset!r} has no seeds in configs/reproduce/reproduce.yaml; known: {list(cfg.seeds)}")
    t0 = time.perf_counter()
    codes = {} if cfg.tables_only else {s: run_stage(s, cfg) for s in cfg.stages}
    tables = list(dict.fromkeys(t for s in cfg.stages for t in STAGE_TABLES[s]))
    subprocess.check_call([sys.executable, str(ROOT / "scripts" / "make_tables.py"), "--preset", cfg.preset,
                           "--runs", cfg.runs_root, "--out", cfg.results_dir, "--tables", ",".join(tables)], cwd=ROOT)
    failed = [r for r in load_runs(cfg.runs_root) if r.status == "failed"]
    for r in failed:
        print(f"[reproduce] FAILED {r.get('experiment')} seed {r.get('seed')}: {r.get('error')} ({r.path})")
    print(f"[reproduce] done in {time.perf_counter() - t0:.0f} s; tables in {cfg.results_dir}")
    if failed or any(codes.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
