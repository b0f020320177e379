"""scripts/export_hf.py: a tiny classification run trained through scripts/train.py, exported, reloaded with
AutoModelForSequenceClassification + AutoTokenizer from the folder alone, reproduces the run's test accuracy (and
which test items it got right) on the raw texts of its test split; the model card holds the run's numbers. With the
shared data present, the exported tokenizer gives the repo pipeline's ids on real IMDB reviews."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from conftest import shared_data_root  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_export_reproduces_the_runs_test_accuracy(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import fastformer.hf  # noqa: F401
    from fastformer.data.classification import split_texts
    from fastformer.data.fixtures import write_text_tables
    from fastformer.hf.export import run_config
    from fastformer.utils import decode_items

    write_text_tables(tmp_path, n_per_class=60)
    run, out = tmp_path / "run", tmp_path / "hf"
    env = {**os.environ, "PROJECT_ROOT": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "data=text_jsonl", f"data.root={tmp_path}",
                        f"data.cache_dir={tmp_path / 'cache'}", "logger=none", "trainer.max_epochs=3",
                        "trainer.progress_bar=false", "model.d_model=32", "model.n_heads=4", "model.encoder.d_ff=32",
                        f"hydra.run.dir={run}"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "export_hf.py"), str(run), str(out), "--check"],
                       cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "same; the same test items right" in r.stdout, r.stdout
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in out.iterdir()}

    metrics = json.loads((run / "metrics.json").read_text())
    card = (out / "README.md").read_text()
    for needle in (f"| test | acc | {metrics['test']['acc']:.2f} |", metrics["git_sha"], "**preset**: quick",
                   "text_jsonl from data.jsonl", "**split sizes**"):
        assert needle in card, needle

    # the folder alone, as a Hugging Face user loads it
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model.config.id2label[0] == "negative" and model.config.mixer == "fastformer"
    texts, labels = split_texts(run_config(run)["data"], "test")  # the run's own data options
    with torch.no_grad():
        enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
        pred = model(**enc).logits.argmax(-1)
    correct = (pred == torch.tensor(labels)).numpy()
    assert 100.0 * correct.mean() == pytest.approx(metrics["test"]["acc"], abs=1e-9)
    assert (correct == decode_items(metrics["test_items"])).all()
    assert metrics["test"]["acc"] > metrics["test"]["majority_acc"]  # a trained model, not a chance-level one


@pytest.mark.data
def test_tokenizer_matches_the_pipeline_on_imdb_reviews(tmp_path):
    import tarfile

    from fastformer.data.text import Vocab, regex_tokenize
    from fastformer.hf.tokenization import build_tokenizer

    root = shared_data_root()
    archive = root / "imdb" / "aclImdb_v1.tar.gz" if root else None
    if archive is None or not archive.exists():
        pytest.skip("no ../shared/data/imdb/aclImdb_v1.tar.gz")
    texts = []
    with tarfile.open(archive) as tf:
        for m in tf:
            if m.isfile() and m.name.endswith(".txt") and "/test/" in m.name:
                texts.append(tf.extractfile(m).read().decode("utf-8"))
                if len(texts) == 1500:
                    break
    tokens = [regex_tokenize(t) for t in texts]
    vocab = Vocab.build(tokens[:750], max_size=5000)
    tok = build_tokenizer(vocab.itos)
    ids = tok(texts)["input_ids"]
    bad = [i for i, (got, want) in enumerate(zip(ids, tokens)) if got != vocab.encode(want)]
    assert not bad, [texts[i][:200] for i in bad[:3]]
