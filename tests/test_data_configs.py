"""Every configs/data/*.yaml composes with its task, validates against the config schema (whose ``data`` keys come from
the loader's own options: fastformer/config_schema.py), and -- for the classification loaders, whose fixtures exist in
the original formats -- loads a small fixture and trains through scripts/train.py (``data=text_jsonl`` stopped at
"unknown config key data.label_names" when the schema held a second copy of the loader's keys)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastformer.config_schema import validate_config

ROOT = Path(__file__).resolve().parents[1]
DATA_CONFIGS = sorted(p.stem for p in (ROOT / "configs" / "data").glob("*.yaml"))
CLASSIFICATION = {"amazon", "imdb", "mind_topics", "text_jsonl"}


def _task(data: str) -> str:
    if data in CLASSIFICATION:
        return "classification"
    if data.startswith("probe_"):
        return "probe"
    return {"mind_rec": "newsrec", "cnndm": "summarization", "pubmed": "summarization"}[data]


def test_every_data_config_has_a_task():
    assert {_task(d) for d in DATA_CONFIGS} == {"classification", "probe", "newsrec", "summarization"}


@pytest.mark.parametrize("data", DATA_CONFIGS)
def test_every_data_config_composes_and_validates(compose_cfg, data):
    task = _task(data)
    model = {"classification": "classifier", "probe": "classifier", "newsrec": "newsrec",
             "summarization": "seq2seq"}[task]
    validate_config(compose_cfg([f"task={task}", f"data={data}", f"model={model}"]))


@pytest.mark.parametrize("data", sorted(CLASSIFICATION))
def test_classification_data_configs_load_a_fixture(compose_cfg, fixture_root, tmp_path, data):
    from fastformer.data.classification import load_classification

    cfg = compose_cfg([f"data={data}", f"data.root={fixture_root}", f"data.cache_dir={tmp_path}",
                       "data.download=false"])
    validate_config(cfg)
    ds = load_classification(cfg.data)
    assert ds.n_classes >= 2 and len(ds.train) > 0 and len(ds.val) > 0 and len(ds.test) > 0


def test_text_jsonl_trains_end_to_end(tmp_path):
    from fastformer.data.fixtures import write_text_tables

    write_text_tables(tmp_path, n_per_class=100)
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "data=text_jsonl",
                        f"data.root={tmp_path}", f"data.cache_dir={tmp_path / 'cache'}", "logger=none",
                        "trainer.max_epochs=4", "trainer.progress_bar=false", f"hydra.run.dir={run}"],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PROJECT_ROOT": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((run / "metrics.json").read_text())
    assert m["dataset"] == "text_jsonl" and m["data_info"]["n_classes"] == 3
    assert m["test"]["acc"] > m["test"]["majority_acc"]  # the fixture's label words are learnable in 4 epochs
