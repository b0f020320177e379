"""Every configs/data/*.yaml composes with its task, validates against the config schema (whose ``data`` keys come from
the loader's own options dataclass: fastformer/config_schema.py), and loads a small fixture through the loader its task
calls: classification (fixtures in the original formats), summarization (a tiny file per layout), newsrec (tiny
synthetic MIND) and the probes (generated); text_jsonl also trains through scripts/train.py (``data=text_jsonl`` stopped
at "unknown config key data.label_names" when the schema held a second copy of the loader's keys)."""
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


def test_every_data_config_is_loaded_by_a_test():
    loaded = CLASSIFICATION | set(SUMMARIZATION) | {"mind_rec"} | {d for d in DATA_CONFIGS if d.startswith("probe_")}
    assert set(DATA_CONFIGS) <= loaded, sorted(set(DATA_CONFIGS) - loaded)


SUMMARIZATION = {"cnndm": ("cnn_dailymail", "highlights"), "pubmed": ("pubmed", "abstract")}


@pytest.mark.parametrize("data", sorted(SUMMARIZATION))
def test_summarization_data_configs_load_a_fixture(compose_cfg, tmp_path, data):
    from fastformer.data.summarization import SummarizationOptions

    subdir, target = SUMMARIZATION[data]
    (tmp_path / subdir).mkdir()
    (tmp_path / subdir / "docs.jsonl").write_text("".join(
        json.dumps({"article": f"Document {i} is about topic {i % 3}. It has two sentences.",
                    target: f"Topic {i % 3}.", "id": str(i)}) + "\n" for i in range(20)))
    cfg = compose_cfg(["task=summarization", f"data={data}", "model=seq2seq", f"data.root={tmp_path}",
                       "data.download=false", "data.files=docs.jsonl"])  # (the quick preset's sample file)
    validate_config(cfg)
    splits, info = SummarizationOptions.from_cfg(cfg.data).load()
    assert sum(len(v) for v in splits.values()) == 20 and all(splits.values()) and "docs.jsonl" in info["files"]


def test_mind_rec_data_config_loads_synthetic_mind(compose_cfg, tmp_path):
    from fastformer.data.mind_rec import load_mind_rec

    cfg = compose_cfg(["task=newsrec", "data=mind_rec", "model=newsrec", f"data.root={tmp_path / 'data'}",
                       "data.synthetic.n_news=60", "data.synthetic.n_users=30", "data.synthetic.train=60",
                       "data.synthetic.dev=20", "data.synthetic.test=20"])
    validate_config(cfg)
    data = load_mind_rec(cfg.data, cache_dir=str(tmp_path / "cache"))
    assert data.info["train_impressions"] == 60 and data.info["test_impressions"] == 20 and data.vocab_size > 2


@pytest.mark.parametrize("data", [d for d in DATA_CONFIGS if d.startswith("probe_")])
def test_probe_data_configs_generate(compose_cfg, data):
    from fastformer.data.probes import ProbeDataset, ProbeOptions, probe_info

    cfg = compose_cfg(["task=probe", f"data={data}", "model=classifier", "data.n_train=4", "data.n_eval=2"])
    validate_config(cfg)
    o = ProbeOptions.from_cfg(cfg.data)
    info = probe_info(o.probe, **o.params)
    for split, n in (("train", o.n_train), ("val", o.n_eval)):
        ds = ProbeDataset(o.probe, seq_len=o.seq_len, n_samples=n, seed=o.data_seed, split=split, **o.params)
        assert len(ds) == n and int(ds.ids.max()) < info.vocab_size


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
