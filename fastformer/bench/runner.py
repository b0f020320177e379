"""``run_bench(cfg)``: resolve device / dtype / grid from the ``configs/bench.yaml`` fields, time the grid, and write
``<out_dir>/<stem>.{csv,md,png}``.

The CSV is rewritten after every point into the run's own folder (``work_dir``: the Hydra run dir of
``scripts/bench.py``), so a killed run keeps its rows. ``<out_dir>`` (results/) follows the rule of every table in
this repo: an existing table is never replaced by one with fewer measured points (``status == ok``) unless
``force=true``. A smaller run (a subset of mixers or lengths, a run cut short, a busier machine that times out more
points) leaves results/ as it was, says so, and keeps its own table in ``work_dir``."""
from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fastformer.bench.grid import GridConfig, Row, parse_specs, resolve_lengths, run_grid
from fastformer.bench.plot import plot_efficiency
from fastformer.bench.timing import configure_cpu_allocator, memory_method
from fastformer.bench.writers import headline, write_csv, write_markdown
from fastformer.results.common import count_finished_csv
from fastformer.utils import PROJECT_ROOT, device_name, git_sha, resolve_device

log = logging.getLogger(__name__)
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
GPU_RECIPE = ("make bench BENCH_ARGS=\"device=cuda tokens_per_batch=65536 max_length=65536 budget_s=60 warmup=3 "
              "iters=20 threads=null\"  (paper grid 128/512 ... 65536/1, bf16 autocast, CUDA events)")


def resolve_dtype(name: str, device: torch.device) -> tuple[str, torch.dtype | None]:
    """-> (label, autocast dtype or None for plain fp32). ``auto`` = bf16 autocast on CUDA, fp32 on CPU."""
    if name == "auto":
        name = "bf16" if device.type == "cuda" else "fp32"
    if name not in DTYPES:
        raise ValueError(f"bench dtype={name!r} is not one of {['auto', *DTYPES]}")
    return ("float32" if name == "fp32" else f"{name} autocast (float32 parameters)"), DTYPES[name]


def run_bench(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Run the benchmark described by ``cfg`` (the fields of configs/bench.yaml); returns paths, rows and header."""
    t_start = time.perf_counter()
    device = resolve_device(str(cfg["device"]), key="device")  # (configs/bench.yaml's key)
    dtype_label, autocast_dtype = resolve_dtype(str(cfg["dtype"]), device)
    if cfg.get("threads") is not None:
        torch.set_num_threads(int(cfg["threads"]))
    if device.type == "cpu":
        configure_cpu_allocator()
    clock = str(cfg.get("plot_clock") or "auto")
    clock = ("cpu" if device.type == "cpu" else "wall") if clock == "auto" else clock
    if clock not in ("wall", "cpu") or (clock == "cpu" and device.type == "cuda"):
        raise ValueError(f"bench plot_clock={cfg.get('plot_clock')!r}: use auto, wall, or cpu (CPU runs only)")
    specs = parse_specs(cfg.get("mixers"), cfg.get("mixer_kwargs") or {})
    lengths = resolve_lengths(cfg.get("lengths"), cfg.get("max_length"))
    out_dir = Path(str(cfg["out_dir"]))
    out_dir = out_dir if out_dir.is_absolute() else PROJECT_ROOT / out_dir
    paths = {ext: out_dir / f"{cfg['stem']}.{ext}" for ext in ("csv", "md", "png")}
    work_dir = Path(str(cfg["work_dir"])) if cfg.get("work_dir") else None
    staged = {ext: work_dir / p.name for ext, p in paths.items()} if work_dir else None
    force = bool(cfg.get("force", False))
    old_ok = count_finished_csv(paths["csv"])  # measured points of the table this run would replace
    rows: list[Row] = []

    def n_ok() -> int:
        return sum(r.status == "ok" for r in rows)

    def on_row(row: Row) -> None:
        rows.append(row)
        if staged:
            write_csv(rows, staged["csv"])
        if force or n_ok() >= old_ok:
            write_csv(rows, paths["csv"])

    load0 = _loadavg()
    grid = GridConfig(device=device, autocast_dtype=autocast_dtype, tokens_per_batch=int(cfg["tokens_per_batch"]),
                      lengths=lengths, modes=list(cfg["modes"]), d_model=int(cfg["d_model"]),
                      n_heads=int(cfg["n_heads"]), warmup=int(cfg["warmup"]), iters=int(cfg["iters"]),
                      budget_s=float(cfg["budget_s"]), grad_input=bool(cfg["grad_input"]), seed=int(cfg["seed"]),
                      on_row=on_row, deadline=t_start + float(cfg["deadline_s"]) if cfg.get("deadline_s") else None)
    log.info("bench on %s (%s): %d mixer(s) x %d length(s) x %s", device_name(device), dtype_label, len(specs),
             len(lengths), grid.modes)
    run_grid(specs, grid)
    wall = time.perf_counter() - t_start
    header = _header(cfg, grid, device, dtype_label, specs, wall, load0)
    header.insert(-1, ("figure", f"{paths['png'].name}: y = {'process CPU' if clock == 'cpu' else 'wall-clock'} "
                                 "time per layer per batch, log scale"))
    comment = f"generated by `make bench` (scripts/bench.py, configs/bench.yaml). GPU recipe: {GPU_RECIPE}"
    kept = None
    if not force and n_ok() < old_ok:
        kept = (f"kept {paths['md']} and its csv/png: they hold {old_ok} measured point(s) and this run only {n_ok()} "
                f"(a subset, a cut-short or busier run?); this run's table is in "
                f"{work_dir if work_dir else 'not written (run_bench got no work_dir)'}; "
                "`make bench BENCH_ARGS=force=true` replaces them anyway, out_dir=<folder> writes elsewhere")
    targets = [staged] if staged else []
    if kept is None:
        targets.append(paths)
    for where in targets:
        write_csv(rows, where["csv"])
        write_markdown(rows, where["md"], header, comment=comment)
        plot_efficiency(rows, where["png"], clock=clock,
                        title=f"{device_name(device)}, {dtype_label}, {grid.tokens_per_batch:,} tokens per batch, "
                              f"torch {torch.__version__}; y = {'process CPU' if clock == 'cpu' else 'wall-clock'} "
                              "time")
    for line in headline(rows):
        log.info("%s", line)
    if kept:
        log.warning("%s", kept)
    log.info("wrote %s in %.0f s", ", ".join(str(p) for w in targets for p in w.values()),
             time.perf_counter() - t_start)
    return {"paths": paths, "rows": rows, "header": header, "wall_s": wall, "kept": kept,
            "staged": staged}


def _loadavg() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (OSError, AttributeError):
        return "n/a"


def _header(cfg, grid: GridConfig, device, dtype_label, specs, wall, load0) -> list[tuple[str, str]]:
    cpu = device.type == "cpu"
    timer = "time.perf_counter" if cpu else "CUDA events (synchronised before start, after end)"
    tpb = grid.tokens_per_batch
    opts = "; ".join(f"{s.label}: {' '.join(f'{k}={v}' for k, v in s.kwargs.items()) or 'defaults'}" for s in specs)
    header = [
        ("device", device_name(device) + (f", {os.cpu_count()} logical cores" if cpu else "")),
        ("software", f"torch {torch.__version__}, Python {platform.python_version()}"),
        ("dtype", dtype_label),
        ("torch threads", f"{torch.get_num_threads()}" + (" (the paper ran 'each experiment by a single thread')"
                                                          if cpu and torch.get_num_threads() == 1 else "")),
        ("date", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("git", git_sha()),
        ("tokens per batch", f"{tpb:,}" + (" (paper: 65,536; smaller for this CPU run)" if tpb != 65536 else
                                           " (as in the paper)") + "; batch = tokens per batch / N (at least 1)"),
        ("model", f"one mixer layer, d_model={grid.d_model}, n_heads={grid.n_heads}; input = fixed random "
                  "embeddings x (B, N, D), no padding (the paper's pseudo samples)"),
        ("modes", "inference = forward under no_grad (eval); training = forward + backward with a fixed random output "
                  "gradient, gradients to the parameters" + (" and to x (as for a non-first layer)"
                                                              if grid.grad_input else "")),
        ("timing", f"{grid.warmup} warm-up call(s), then median of up to {grid.iters} calls timed with {timer}; "
                   f"budget {grid.budget_s:g} s per point, in {'process CPU' if cpu else 'GPU'} time (the last "
                   "warm-up call estimates one call; above the budget the point is `timeout` and longer lengths are "
                   "`skipped`); also bounds the number of timed calls"),
        ("peak memory", memory_method(device)),
        ("mixer options", opts + "; max_len = N for mixers that take it (Linformer); Table 8 MIND topic "
                                 "classification column"),
        ("run time", f"{wall:.0f} s wall for the whole grid"),
    ]
    if cpu:
        header.append(("machine load", f"1-min load average {load0} at start, {_loadavg()} at end "
                                       f"({os.cpu_count()} cores)"))
    if cfg.get("note"):
        header.append(("note", str(cfg["note"])))
    header.append(("GPU recipe", f"`{GPU_RECIPE.split('  ')[0]}`"))
    return header
