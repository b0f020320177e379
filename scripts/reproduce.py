"""Reproduce the paper's tables: run each stage's Hydra multirun sweep, then regenerate results/ from run outputs.

    python scripts/reproduce.py [preset=quick|paper] [stages=[table4]] [overrides=[trainer=gpu]]

Sweeps write to logs/multiruns/<preset>/<experiment>/seed<k>/ and skip finished runs, so re-running resumes. A failed
job does not stop the others: it is written to its failed.json, shown as "failed" in the table and listed at the end
(exit code 1).

Before any run is launched, every stage's datasets are checked (scripts/data.py, fetching what is missing when
online). Missing data gives one message per dataset (URL and the exact path to place it at); with
``on_missing_data=stop`` (default) nothing is launched and no table is rebuilt, with ``skip`` only the stages whose
data is there run. A table is never replaced by one with fewer finished cells unless ``force_tables=true``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from fastformer.data.catalog import stage_datasets, stage_sweeps  # noqa: E402
from fastformer.results.common import load_runs  # noqa: E402
from fastformer.results.probes import best_causal_lr  # noqa: E402

# stage -> tables it feeds (scripts/make_tables.py names)
STAGE_TABLES = {"table4": ["table4"], "table5": ["table5"], "table6": ["table6"], "ablations": ["ablations", "table4"],
                "probes": ["probes"], "probes_recall": ["probes"], "probes_causal": ["probes"],
                "probes_length": ["probes"]}


def stage_commands(stage: str, cfg: DictConfig) -> Iterator[list[str]]:
    """The sweep commands of a stage, in order: one per sweep file of the stage (``stage_sweeps``), or one per wave of
    ``stage_waves`` (seeds x experiments of the stage's sweep file, plus the wave's own ``overrides``, e.g.
    ``ablation=a,b`` for a subset of the sweep's ablations) where the preset defines waves. A generator:
    :func:`run_stage` runs each command before the next is made, so an ``lr: best`` wave reads the runs that the
    waves before it finished."""
    per_stage = list((cfg.stage_overrides.get(cfg.preset) or {}).get(stage, []))
    tail = [f"logger={cfg.logger}", f"hydra.sweep.dir={cfg.runs_root}", *per_stage, *cfg.overrides]

    def base(sweep: str) -> list[str]:
        return [sys.executable, str(ROOT / "scripts" / "train.py"), "-m", f"+sweep={sweep}", f"preset={cfg.preset}"]
    waves = ((cfg.get("stage_waves") or {}).get(cfg.preset) or {}).get(stage)
    if not waves:
        seeds = (cfg.get("stage_seeds", {}).get(cfg.preset) or {}).get(stage, cfg.seeds[cfg.preset])
        yield from ([*base(sweep), f"seed={seeds}", *tail] for sweep in stage_sweeps(stage))
        return
    for w in waves:
        head = [*base(stage_sweeps(stage)[-1]), f"seed={w.seeds}"]
        own = [str(o) for o in w.get("overrides") or []]  # the wave's own sweep overrides, e.g. a subset of ablations
        if w.get("lr") != "best":
            yield [*head, f"experiment={','.join(w.experiments)}", *own, *tail]
            continue
        for exp, lr in best_lrs(w.experiments, cfg.runs_root).items():  # one command per row, at its chosen lr
            if lr is None:
                print(f"[reproduce] {stage}: {exp} has no finished run to choose its lr from: its seeds {w.seeds} "
                      "wait for the earlier wave (re-run to resume)", flush=True)
            else:
                yield [*head, f"experiment={exp}", *own, *tail, f"optimizer.lr={lr!r}"]


def best_lrs(experiments: list[str], runs_root: str) -> dict[str, float | None]:
    """experiment -> the learning rate its finished causal MQAR runs under ``runs_root`` chose
    (fastformer/results/probes.py ``best_causal_lr``); the row is the experiment's file name."""
    runs = load_runs(runs_root) if Path(runs_root).is_dir() else []
    try:
        return {exp: best_causal_lr(runs, exp.rsplit("/", 1)[-1]) for exp in experiments}
    except ValueError as err:  # runs of a row at several (L, pairs) points: which one's lr is meant is not known
        print(f"[reproduce] {err} under {runs_root}; an `lr: best` wave needs one point per row there: give the stage "
              "its own runs_root", file=sys.stderr)
        raise SystemExit(2) from None


def run_stage(stage: str, cfg: DictConfig) -> int:
    rc = 0
    for k, cmd in enumerate(stage_commands(stage, cfg)):
        print(f"[reproduce] {stage} (sweep {k + 1}): {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT) or rc  # a failed job does not stop the next wave
        print(f"[reproduce] {stage} (sweep {k + 1}): exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
    return rc


def missing_data(stages: list[str], cfg: DictConfig) -> dict[str, list[str]]:
    """stage -> one-line messages of its missing datasets (scripts/data.py; fetches when online and allowed)."""
    need = {s: stage_datasets(s) for s in stages}
    names = list(dict.fromkeys(d for ds in need.values() for d in ds))
    if not names:
        return {}
    data_overrides = [o for o in cfg.overrides if str(o).lstrip("+").startswith(("data.", "data="))]
    cmd = [sys.executable, str(ROOT / "scripts" / "data.py"), "--datasets", ",".join(names), "--preset", cfg.preset,
           "--no-rows", "--json", *([] if cfg.fetch_data else ["--no-fetch"]),
           *(a for o in data_overrides for a in ("--override", str(o)))]
    print(f"[reproduce] checking data for {names} under {os.environ.get('DATA_ROOT', ROOT / 'data')}", flush=True)
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    statuses = {}
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            st = json.loads(line)
            statuses[st["dataset"]] = st
    if set(statuses) != set(names):  # the checker itself failed: report it as every stage's problem
        why = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return {s: [f"data check failed ({why})"] for s, ds in need.items() if ds}
    return {s: [f"{d}: {statuses[d]['message']}" for d in ds if not statuses[d]["present"]] for s, ds in need.items()
            if any(not statuses[d]["present"] for d in ds)}


@hydra.main(version_base="1.3", config_path="../configs/reproduce", config_name="reproduce")
def main(cfg: DictConfig) -> None:
    unknown = [s for s in cfg.stages if s not in STAGE_TABLES]
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}; known: {list(STAGE_TABLES)} (configs/reproduce/reproduce.yaml)")
    if cfg.preset not in cfg.seeds:
        raise SystemExit(f"preset={cfg.preset!r} has no seeds in configs/reproduce/reproduce.yaml; "
                         f"known: {list(cfg.seeds)}")
    if cfg.on_missing_data not in ("stop", "skip"):
        raise SystemExit(f"on_missing_data={cfg.on_missing_data!r} is not one of ['stop', 'skip']")
    t0 = time.perf_counter()
    stages = list(cfg.stages)
    missing = {} if cfg.tables_only or not cfg.check_data else missing_data(stages, cfg)
    if missing:
        print(f"[reproduce] data missing for stage(s) {', '.join(missing)}, which are not launched:", flush=True)
        for m in dict.fromkeys(m for msgs in missing.values() for m in msgs):
            print(f"[reproduce]   MISSING {m}", flush=True)
    if missing and cfg.on_missing_data == "stop":
        print(f"[reproduce] nothing launched and no table rebuilt ({time.perf_counter() - t0:.0f} s); place the files "
              "above (or `make data` when online), point DATA_ROOT at them, or run the other stages with "
              "REPRO_ARGS='on_missing_data=skip'", flush=True)
        sys.exit(2)
    stages = [s for s in stages if s not in missing]
    codes = {} if cfg.tables_only else {s: run_stage(s, cfg) for s in stages}
    tables = list(dict.fromkeys(t for s in stages for t in STAGE_TABLES[s]))
    rc_tables = 0
    if tables:
        rc_tables = subprocess.call([sys.executable, str(ROOT / "scripts" / "make_tables.py"), "--preset", cfg.preset,
                                     "--runs", cfg.runs_root, "--out", cfg.results_dir, "--tables", ",".join(tables),
                                     *(["--force"] if cfg.force_tables else [])], cwd=ROOT)
    failed = [r for r in load_runs(cfg.runs_root) if r.status == "failed"]
    for r in failed:
        print(f"[reproduce] FAILED {r.get('experiment')} seed {r.get('seed')}: {r.get('error')} ({r.path})")
    print(f"[reproduce] done in {time.perf_counter() - t0:.0f} s; tables in {cfg.results_dir}")
    if failed or any(codes.values()) or rc_tables or missing:
        sys.exit(1)


if __name__ == "__main__":
    main()
