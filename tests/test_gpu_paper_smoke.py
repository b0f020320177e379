"""scripts/gpu_paper_smoke.py (issue 15) on CPU at tiny limits, so that the prepared GPU run (8 minutes of scarce
device time) cannot fail on a typo: every task end to end through the paper preset + trainer=gpu configs, the table
with numbers and statuses, the projection, the efficiency grid; every Table 4-6 cell's config composes; missing data,
the per-run budget and the global deadline become statuses, not crashes."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--device", "cpu", "--tiny", "--steps", "2", "--warmup-steps", "1", "--eval-examples", "16", "--decodes", "2"]
DATASETS = ("amazon", "imdb", "mind_topics", "mind_rec", "cnndm", "pubmed")


def _smoke():
    spec = importlib.util.spec_from_file_location("gpu_paper_smoke", ROOT / "scripts" / "gpu_paper_smoke.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(md: str) -> dict[tuple[str, str], list[str]]:
    out = {}
    for ln in md.split("## Projected")[0].splitlines():
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if ln.startswith("| table") and cells[0] != "table":
            out[(cells[1], cells[2])] = cells
    return out


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU smoke run")
def test_every_task_runs_end_to_end_on_cpu(tmp_path):
    """Fastformer and the Transformer on all six datasets (fixture data), then the efficiency grid: every row
    finished with ms/step, tokens/s, peak memory and a projection; the per-table GPU-hours; the fastformer mixer's
    implementation recorded; the Figure 2 files written."""
    md_path = _smoke().main(TINY + ["--fixtures", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "w"),
                                    "--mixers", "fastformer,transformer", "--bench-mixers", "fastformer,transformer",
                                    "--bench-lengths", "16"])
    assert md_path == tmp_path / "out" / "gpu_paper_cpu.md"
    md = md_path.read_text()
    rows = _rows(md)
    assert set(rows) == {(d, m) for d in DATASETS for m in ("fastformer", "transformer")}, md
    num = re.compile(r"^[\d,]+(\.\d+)?$")
    for (ds, mixer), c in rows.items():
        status, steps, ms, first, tok, mem, ev, dec, impl, test, proj = c[3:14]
        assert status == "finished" and steps == "2", c
        assert all(num.match(v) for v in (ms, first, tok, mem, ev, proj)), c
        assert num.match(dec) if ds in ("cnndm", "pubmed") else dec == "—", c
        assert impl == ("eager" if mixer == "fastformer" else "—"), c  # CPU: auto runs eager
        assert re.match(r"^(acc|auc|rouge1) \d+\.\d$", test), c
    assert "48 cells" not in md and "12 of 12 cells recorded, 12 finished" in md
    for table in ("Table 4 (classification) | 6 of 6", "Table 5 (news recommendation) | 2 of 2",
                  "Table 6 (summarization) | 4 of 4"):
        assert table in md, md
    assert re.search(r"\| \*\*all three\*\* \| \| \| \| \*\*[\d.]+\*\* \|", md)
    for key in ("torch", "CUDA", "triton", "card"):
        assert f"- **{key}**:" in md
    saved = json.loads(md_path.with_suffix(".json").read_text())
    assert saved["done"] and len(saved["rows"]) == 12 and all(r["steps_per_epoch"] > 0 for r in saved["rows"])
    ff = next(r for r in saved["rows"] if r["dataset"] == "amazon" and r["mixer"] == "fastformer")
    assert ff["mixer_impl"]["requested"] == "auto" and ff["steps_per_epoch"] == 625
    assert ff["epochs"] == 3 and ff["seeds"] == 5
    eff = (tmp_path / "out" / "efficiency_cpu.md").read_text()
    assert "| fastformer | transformer |" in eff and (tmp_path / "out" / "efficiency_cpu.png").exists()


def test_every_table_cell_composes_for_the_gpu_run(tmp_path):
    """The 50 cells of configs/sweep/table{4,5,6}.yaml (Table 6 has a Fastformer-decoder row), row-major; the 38 the
    end-to-end test does not run compose
    with the GPU run's overrides (not --tiny): no typo can wait for the card. Summarization reads the sample file
    where no full data is present."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    smoke = _smoke()
    a = smoke.parse_args([])
    cells = smoke.ordered(smoke.sweep_cells(["table4", "table5", "table6"]))
    assert len(cells) == 50 and [c[2] for c in cells[:12]] == ["fastformer"] * 6 + ["transformer"] * 6
    (tmp_path / "cnn_dailymail").mkdir()
    (tmp_path / "cnn_dailymail" / "validation_sample.csv.gz").write_bytes(b"")
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        for _, ds, mixer in cells[12:]:
            task = {"mind_rec": "newsrec", "cnndm": "summarization", "pubmed": "summarization"}.get(ds,
                                                                                                 "classification")
            cfg = compose("train", overrides=smoke.cell_overrides(ds, mixer, a, tmp_path, tmp_path, task))
            assert cfg.task.name == task and cfg.row == mixer and cfg.preset_name == "paper"  # the row
            assert cfg.trainer.device == "cuda" and cfg.trainer.precision == "bf16"
            assert cfg.trainer.limit_train_batches == a.steps and cfg.trainer.max_epochs == 1
            extra, missing = smoke.data_overrides(cfg, tmp_path)
            if ds == "cnndm":
                assert extra == ["data.files=${data.sample_file}"] and missing is None
            if ds == "pubmed":
                assert missing and "sumpubmed_sample" in missing
    GlobalHydra.instance().clear()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU smoke run")
def test_missing_data_budget_and_deadline_are_statuses(tmp_path):
    smoke = _smoke()
    out = tmp_path / "out"
    md = smoke.main(TINY + ["--data-root", str(tmp_path / "empty"), "--out", str(out), "--bench-s", "0",
                            "--datasets", "amazon,cnndm", "--mixers", "fastformer"]).read_text()
    rows = _rows(md)
    assert rows[("amazon", "fastformer")][3].startswith("missing data: DataUnavailableError"), md
    assert rows[("cnndm", "fastformer")][3].startswith("missing data: no train* file"), md
    md = smoke.main(TINY + ["--fixtures", "--out", str(out), "--bench-s", "0", "--datasets", "amazon",
                            "--mixers", "fastformer", "--run-budget", "0"]).read_text()
    assert _rows(md)[("amazon", "fastformer")][3].startswith("over run budget (0 s)"), md
    md = smoke.main(TINY + ["--fixtures", "--out", str(out), "--deadline", "0", "--bench-s", "0",
                            "--datasets", "amazon,pubmed"]).read_text()
    rows = _rows(md)
    assert len(rows) == 17 and {c[3] for c in rows.values()} == {"skipped: time budget"}, md  # 8 + 9 (decoder row)
    assert "0 of 8 | >= 0.0" in md  # a cut-short run says its totals are lower bounds
