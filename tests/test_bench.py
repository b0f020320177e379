"""Efficiency benchmark (scripts/bench.py, fastformer/bench): tiny grids on CPU, the three output files, the
OOM / timeout / skipped recording paths, the ``name[impl]`` syntax and the bench config's Table 8 options.
No timing assertions."""
from __future__ import annotations

import csv
import math
import runpy
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from fastformer.bench import GridConfig, parse_specs, run_bench, run_grid
from fastformer.bench.paper import FIGURE2, paper_ratio
from fastformer.bench.timing import measure
from fastformer.mixers import MIXERS, TokenMixer, mixer_kwargs, register_mixer
from fastformer.mixers.base import build_mixer

ROOT = Path(__file__).resolve().parents[1]
TINY = ["mixers=[fastformer,transformer]", "lengths=[16,32]", "tokens_per_batch=64", "d_model=32", "n_heads=4",
        "warmup=1", "iters=2", "budget_s=60"]


def bench_cfg(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return OmegaConf.to_container(compose("bench", overrides=list(overrides)), resolve=True)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cli_writes_csv_md_png(tmp_path, monkeypatch):
    """The `make bench` entry point (scripts/bench.py under @hydra.main, run in-process) on a tiny grid:
    2 mixers x 2 lengths x 2 modes, all rows present and ok."""
    argv = ["bench.py", *TINY, "threads=null", f"out_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'hydra'}",
            "note=unit test"]
    monkeypatch.setattr(sys, "argv", argv)
    GlobalHydra.instance().clear()
    runpy.run_path(str(ROOT / "scripts/bench.py"), run_name="__main__")
    rows = read_csv(tmp_path / "efficiency.csv")
    assert [(r["mixer"], r["mode"], r["seq_len"], r["batch_size"]) for r in rows] == [
        (m, mode, n, b) for m in ("fastformer", "transformer") for mode in ("inference", "training")
        for n, b in (("16", "4"), ("32", "2"))]
    for r in rows:
        assert r["status"] == "ok", r
        sec, tps = float(r["seconds"]), float(r["tokens_per_s"])
        assert sec > 0 and math.isclose(tps, int(r["seq_len"]) * int(r["batch_size"]) / sec, rel_tol=1e-3)
        assert float(r["cpu_seconds"]) >= 0 and 1 <= int(r["iters"]) <= 2
    md = (tmp_path / "efficiency.md").read_text()
    for key in ("**device**", "**software**: torch " + torch.__version__, "**dtype**: float32", "**git**",
                "**tokens per batch**: 64", "budget 60 s", "**figure**: efficiency.png: y = process CPU time",
                "**peak memory**", "**note**: unit test", "GPU recipe",
                "## Inference: ms per layer per batch", "## Training: ms per layer per batch", "| 16/4 |",
                "| N/B | fastformer | transformer |"):
        assert key in md, key
    assert (tmp_path / "efficiency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp")), "atomic writes left temp files behind"


def test_zero_budget_records_timeout_and_skipped(tmp_path):
    """budget 0 s: inference at the first length is a timeout; longer lengths, and training at >= that length, are
    skipped without running; no row is dropped."""
    out = run_bench(bench_cfg(*TINY, "budget_s=0", "threads=null", f"out_dir={tmp_path}", "stem=zero"))
    rows = read_csv(tmp_path / "zero.csv")
    assert len(rows) == len(out["rows"]) == 8
    for r in rows:
        first = r["seq_len"] == "16" and r["mode"] == "inference"
        want = "timeout: > 0 s" if first else "skipped: > budget"
        assert r["status"] == want and r["seconds"] == "", r
    md = (tmp_path / "zero.md").read_text()
    assert "| 16/4 | timeout | timeout |" in md and "| 16/4 | skipped | skipped |" in md
    assert (tmp_path / "zero.png").stat().st_size > 0


def test_smaller_run_keeps_the_committed_table_unless_forced(tmp_path):
    """results/efficiency.* with 8 measured points is not replaced by a 4-point run (a subset: one mixer): the old
    files stay byte-identical, the run's own table goes to its work_dir, and the CLI exits 1; force=true replaces."""
    out, work = tmp_path / "res", tmp_path / "work"
    full = run_bench(bench_cfg(*TINY, "threads=null", f"out_dir={out}"))
    assert full["kept"] is None and sum(r.status == "ok" for r in full["rows"]) == 8
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    small = [o if not o.startswith("mixers=") else "mixers=[fastformer]" for o in TINY]
    res = run_bench(bench_cfg(*small, "threads=null", f"out_dir={out}", f"work_dir={work}"))
    assert res["kept"] and "8 measured point(s)" in res["kept"] and "only 4" in res["kept"], res["kept"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert len(read_csv(work / "efficiency.csv")) == 4 and (work / "efficiency.md").is_file()
    assert (work / "efficiency.png").is_file()
    argv = ["bench.py", *small, "threads=null", f"out_dir={out}", f"hydra.run.dir={tmp_path / 'hydra'}"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", argv)
        GlobalHydra.instance().clear()
        with pytest.raises(SystemExit) as stop:
            runpy.run_path(str(ROOT / "scripts/bench.py"), run_name="__main__")
    assert stop.value.code == 1 and {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert len(read_csv(tmp_path / "hydra" / "efficiency.csv")) == 4  # the CLI's run dir holds its table
    forced = run_bench(bench_cfg(*small, "threads=null", f"out_dir={out}", "force=true"))
    assert forced["kept"] is None and len(read_csv(out / "efficiency.csv")) == 4


def test_oom_rows_are_recorded_and_longer_lengths_still_run():
    @register_mixer("_bench_oom_probe")
    class OOMProbe(TokenMixer):  # behaves like a mixer that runs out of memory at N >= 32
        def __init__(self, d_model: int, n_heads: int, *, max_len: int | None = None):
            super().__init__(d_model, n_heads)
            self.lin = torch.nn.Linear(d_model, d_model)

        def forward(self, x, mask=None):
            if x.shape[1] >= 32:
                raise RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory")
            return self.lin(x)

    try:
        specs = parse_specs(["_bench_oom_probe"], {})
        grid = GridConfig(device=torch.device("cpu"), autocast_dtype=None, tokens_per_batch=64, lengths=[16, 32, 64],
                          modes=["inference", "training"], d_model=8, n_heads=2, iters=2, budget_s=60)
        rows = run_grid(specs, grid)
    finally:
        MIXERS.pop("_bench_oom_probe")
    assert [(r.mode, r.seq_len, r.status) for r in rows] == [
        (mode, n, "ok" if n == 16 else "OOM") for mode in ("inference", "training") for n in (16, 32, 64)]
    assert all(math.isnan(r.seconds) for r in rows if r.status == "OOM")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU rows")
def test_triton_variant_rows_say_unavailable_off_gpu():
    """`make bench` lists fastformer[triton]; on a CPU device its rows are recorded as unavailable, not dropped."""
    specs = parse_specs(["fastformer[triton]", "fastformer"], {"fastformer": {"impl": "eager"}})
    grid = GridConfig(device=torch.device("cpu"), autocast_dtype=None, tokens_per_batch=32, lengths=[16],
                      modes=["inference", "training"], d_model=16, n_heads=2, iters=1, budget_s=60)
    rows = run_grid(specs, grid)
    assert [(r.mixer, r.status) for r in rows] == [("fastformer[triton]", "unavailable: needs CUDA")] * 2 + [
        ("fastformer", "ok")] * 2
    assert all(math.isnan(r.seconds) for r in rows[:2])


def test_grid_deadline_skips_the_points_not_started():
    """deadline_s (the GPU smoke's whole-grid limit): points after the deadline are recorded, not run."""
    import time
    specs = parse_specs(["linear_transformer"], {})
    grid = GridConfig(device=torch.device("cpu"), autocast_dtype=None, tokens_per_batch=32, lengths=[16, 32],
                      modes=["inference"], d_model=16, n_heads=2, iters=1, budget_s=60, deadline=time.perf_counter())
    assert [r.status for r in run_grid(specs, grid)] == ["skipped: deadline"] * 2


def test_measure_statuses():
    cpu = torch.device("cpu")

    def fail(err):
        def step():
            raise err
        return step
    def status(err):
        return measure(fail(err), cpu, warmup=1, iters=1, budget_s=9).status
    assert status(torch.OutOfMemoryError("CUDA out of memory")) == "OOM"
    assert status(RuntimeError("DefaultCPUAllocator: can't allocate memory")) == "OOM"
    assert status(MemoryError()) == "OOM"
    assert status(IndexError("bad index")) == "error: IndexError: bad index"
    assert status(KeyError()) == "error: KeyError"
    ok = measure(lambda: None, cpu, warmup=2, iters=3, budget_s=9)
    assert ok.status == "ok" and ok.iters == 3 and ok.seconds >= 0
    with pytest.raises(ValueError, match="warmup"):
        measure(lambda: None, cpu, warmup=0, iters=1, budget_s=1)


def test_mixer_spec_syntax():
    specs = parse_specs("fastformer, fastformer[compile] transformer", {"fastformer": {"variant": "paper"}})
    assert [(s.label, s.name, dict(s.kwargs)) for s in specs] == [
        ("fastformer", "fastformer", {"variant": "paper"}),
        ("fastformer[compile]", "fastformer", {"variant": "paper", "impl": "compile"}),
        ("transformer", "transformer", {})]
    every = parse_specs(None, {})  # null = every registered mixer, paper legend order first, + fastformer[triton]
    assert sorted({s.name for s in every}) == sorted(MIXERS) and every[0].label == "fastformer"
    assert every[1].label == "fastformer[triton]" and every[1].kwargs["impl"] == "triton"
    with pytest.raises(ValueError, match="no impl= option"):
        parse_specs(["transformer[fast]"], {})
    with pytest.raises(KeyError, match="unknown mixer"):
        parse_specs(["no_such_mixer"], {})
    with pytest.raises(ValueError, match="name\\[impl\\]"):
        parse_specs(["fastformer[compile"], {})


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_bench_options_build_and_match_mind_experiments(name):
    """bench.yaml's Table 8 (MIND topic classification) options build every registered mixer at d=256, h=16 and agree
    with configs/experiment/mind_topics/<name>.yaml where that file sets the same option."""
    opts = bench_cfg()["mixer_kwargs"].get(name)
    if opts is None:
        pytest.skip(f"{name} has no bench.yaml mixer_kwargs entry (benchmarked with its defaults)")
    kw = dict(opts, **({"max_len": 128} if "max_len" in mixer_kwargs(name) else {}))
    m = build_mixer(name, d_model=256, n_heads=16, **kw)
    with torch.no_grad():
        assert m(torch.randn(1, 128, 256)).shape == (1, 128, 256)
    exp = ROOT / "configs/experiment/mind_topics" / f"{name}.yaml"
    if exp.exists():
        mixer_over = OmegaConf.to_container(OmegaConf.load(exp)).get("model", {}).get("mixer", {}) or {}
        for key, val in mixer_over.items():
            if key in opts:
                assert opts[key] == val, f"bench.yaml mixer_kwargs.{name}.{key}={opts[key]} but {exp.name} has {val}"


def test_paper_figure2_values():
    assert set(FIGURE2) == {"inference", "training"}
    assert math.isclose(paper_ratio("training", 65536, "longformer"), 990 / 470)
    assert paper_ratio("inference", 8192, "transformer") is None  # OOM in the paper
    assert paper_ratio("inference", 1024, "linformer") is None  # not digitised


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_recipe_tiny(tmp_path):
    """The GPU path: bf16 autocast, CUDA-event timing, CUDA peak memory; every row ok on a tiny grid."""
    out = run_bench(bench_cfg(*TINY, "device=cuda", "threads=null", "warmup=2", "iters=3", f"out_dir={tmp_path}"))
    assert all(r.status == "ok" and r.seconds > 0 and r.peak_mem_mib > 0 for r in out["rows"])
    assert all(math.isnan(r.cpu_seconds) for r in out["rows"])
    md = (tmp_path / "efficiency.md").read_text()
    assert "bf16 autocast" in md and "CUDA events" in md and "max_memory_allocated" in md


@pytest.mark.parametrize("mixer", ["fastformer", "transformer"])
def test_train_step_bench_rows_compose_and_validate(mixer):
    """scripts/bench_train_step.py: every row's overrides (the FFN-dropout switch, the paper's width) compose with the
    cpu preset and pass the config schema, and a row's record carries what the child process needs."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_train_step as b
    from fastformer.config_schema import validate_config

    for name, v in b.VARIANTS.items():
        GlobalHydra.instance().clear()
        cfg = b.compose_cfg("imdb", mixer, "cpu", list(v.overrides))
        validate_config(cfg)
        assert v.dropout in ("torch", "fast") and isinstance(v.grouped, bool), name
        if "d_model256" in name:
            assert cfg.model.d_model == 256 and cfg.model.d_model // cfg.model.n_heads == 16
        if "no_ffn_dropout" in name:
            assert cfg.model.encoder.ffn_dropout is False
    assert set(b.DEFAULT_VARIANTS.split(",")) <= set(b.VARIANTS) and b.PROFILED in b.VARIANTS
