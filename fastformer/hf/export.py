"""A classification run -> a Hugging Face folder (scripts/export_hf.py): weights, config, tokenizer, model card.

    export_run(run_dir, out_dir)      # writes model.safetensors, config.json, tokenizer files, README.md
    check_folder(out_dir, run_dir)    # the folder (Auto classes, raw test texts) against the run's metrics.json

The run dir is what scripts/train.py wrote: ``.hydra/config.yaml`` (the run's config), ``metrics.json`` and
``checkpoints/best.pt`` (``{"model": TextClassifier state dict, ...}``). The vocabulary and label names come from the
run's data (``load_classification(cfg.data)``: the cached encoding, or the source files), so the data must be
reachable (``data_root`` / ``cache_dir`` override the run's paths).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]


def run_config(run_dir: Path, *, data_root: str | None = None, cache_dir: str | None = None) -> dict[str, Any]:
    """The run's resolved config as a dict (``.hydra/config.yaml``; ``${oc.env:...}`` paths resolved here)."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: export needs a run dir written by scripts/train.py")
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    cfg = OmegaConf.load(path)
    if data_root is not None:
        cfg.data.root = data_root
    if cache_dir is not None:
        cfg.data.cache_dir = cache_dir
    return OmegaConf.to_container(cfg, resolve=True)


def _model_card(cfg: dict, metrics: dict, config, run_dir: Path) -> str:
    data, info = cfg["data"], metrics.get("data_info") or {}
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    rows = [("split", "metric", "value")]
    for split in ("val", "test"):
        for k, v in (metrics.get(split) or {}).items():
            rows.append((split, k, fmt(v)))
    for k, v in (metrics.get("baselines") or {}).items():
        rows.append(("test", f"reference: {k}", fmt(v)))
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows[:1]) + "\n|---|---|---|\n" + \
        "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows[1:])
    facts = {
        "dataset": metrics.get("dataset") or data.get("name"), "data used": info.get("data_used"),
        "split sizes": info.get("sizes"), "split": info.get("split"), "labels": info.get("label_names"),
        "tokenizer": f"{data.get('tokenizer')} (lowercase={data.get('lowercase')}), vocabulary {config.vocab_size}",
        "max_len": data.get("max_len"), "preset": metrics.get("preset") or cfg.get("preset_name"),
        "experiment": metrics.get("experiment") or cfg.get("experiment_name"),
        "mixer": f"{config.mixer} {json.dumps(config.mixer_kwargs, sort_keys=True)}",
        "variant": metrics.get("variant"), "seed": metrics.get("seed"), "best epoch": metrics.get("best_epoch"),
        "parameters": metrics.get("params"), "git sha": metrics.get("git_sha"), "torch": metrics.get("torch"),
        "device": metrics.get("device"), "run dir": str(run_dir),
    }
    lines = "\n".join(f"- **{k}**: {v}" for k, v in facts.items() if v is not None)
    return f"""---
library_name: transformers
tags: [fastformer, text-classification, fastformer-repro]
---
# {facts['experiment']} (fastformer-repro run, seed {facts['seed']})

A text classifier trained by [fastformer-repro](https://arxiv.org/abs/2108.09084) (`scripts/train.py`), exported by
`scripts/export_hf.py`: token embedding -> {config.num_hidden_layers}-layer encoder with the `{config.mixer}` mixer
(d_model {config.hidden_size}, {config.num_attention_heads} heads) -> attention pooling -> linear.

```python
import fastformer.hf  # registers model_type "fastformer" (pip install "fastformer-repro[hf]")
from transformers import AutoModelForSequenceClassification, AutoTokenizer
tok = AutoTokenizer.from_pretrained("<this folder>")
model = AutoModelForSequenceClassification.from_pretrained("<this folder>").eval()
pred = model(**tok(["a text"], return_tensors="pt", padding=True, truncation=True)).logits.argmax(-1)
```

The tokenizer reproduces the run's word-level tokenisation and vocabulary (ids of the run's data pipeline;
truncation at max_len = {facts['max_len']} tokens with `truncation=True`).

## Results of the run (metrics.json, best epoch)

{table}

## Run

{lines}
"""


def export_run(run_dir: str | Path, out_dir: str | Path, *, data_root: str | None = None,
               cache_dir: str | None = None) -> Path:
    """Write the Hugging Face folder of classification run ``run_dir`` to ``out_dir``; returns ``out_dir``."""
    from fastformer.data.classification import load_classification
    from fastformer.hf.configuration import FastformerConfig
    from fastformer.hf.modeling import FastformerForSequenceClassification, from_text_classifier_state_dict
    from fastformer.hf.tokenization import build_tokenizer

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    cfg = run_config(run_dir, data_root=data_root, cache_dir=cache_dir)
    if cfg["task"]["name"] != "classification":
        raise ValueError(f"{run_dir}: task {cfg['task']['name']!r}; export supports classification runs")
    metrics_path, ckpt = run_dir / "metrics.json", run_dir / "checkpoints" / "best.pt"
    for p in (metrics_path, ckpt):
        if not p.exists():
            raise FileNotFoundError(f"{p} not found: export needs a finished run (metrics.json + checkpoints/best.pt)")
    metrics = json.loads(metrics_path.read_text())
    ds = load_classification(cfg["data"])
    data = cfg["data"]
    config = FastformerConfig.from_run_config(
        cfg["model"], vocab_size=len(ds.vocab), max_len=int(data["max_len"]),
        num_labels=ds.n_classes, id2label=dict(enumerate(ds.label_names)),
        label2id={n: i for i, n in enumerate(ds.label_names)})
    if config.mixer_kwargs.get("impl") == "triton":  # the fused kernels need CUDA; "auto" uses them there
        config.mixer_kwargs["impl"] = "auto"
    model = FastformerForSequenceClassification(config)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
    model.load_state_dict(from_text_classifier_state_dict(state), strict=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok = build_tokenizer(ds.vocab.itos, tokenizer=data.get("tokenizer", "regex"),
                          lowercase=bool(data.get("lowercase", True)), max_len=int(data["max_len"]))
    tok.save_pretrained(out_dir)
    (out_dir / "README.md").write_text(_model_card(cfg, metrics, config, run_dir))
    (out_dir / "run_metrics.json").write_text(json.dumps(metrics, indent=1))
    return out_dir


@torch.no_grad()
def predict_folder(folder: str | Path, texts: Sequence[str], *, batch_size: int = 64) -> torch.Tensor:
    """Predicted class ids (N,) of ``AutoModelForSequenceClassification`` + ``AutoTokenizer`` from ``folder`` on raw
    texts. As the repo's collate does, a text with no token is one ``<unk>``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import fastformer.hf  # noqa: F401  (registers the Auto classes)

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    preds = []
    for start in range(0, len(texts), batch_size):
        ids = tok(list(texts[start:start + batch_size]), truncation=True)["input_ids"]
        ids = [row or [tok.unk_token_id] for row in ids]
        batch = tok.pad({"input_ids": ids}, return_tensors="pt")
        preds.append(model(**batch).logits.argmax(-1))
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def check_folder(folder: str | Path, run_dir: str | Path, *, data_root: str | None = None,
                 cache_dir: str | None = None) -> dict[str, Any]:
    """Evaluate an exported folder on the raw texts of its run's test split and compare with the run's metrics.json:
    ``{"acc", "run_acc", "same_acc", "same_items"}`` (``same_items``: the same test items right and wrong as the run's
    per-item record, None when metrics.json has none)."""
    from fastformer.data.classification import split_texts
    from fastformer.utils import decode_items

    cfg = run_config(Path(run_dir), data_root=data_root, cache_dir=cache_dir)
    texts, labels = split_texts(cfg["data"], "test")
    correct = (predict_folder(folder, texts) == torch.tensor(labels)).numpy()
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    acc = 100.0 * float(correct.mean()) if len(correct) else 0.0
    items = metrics.get("test_items")
    return {"acc": acc, "run_acc": metrics["test"]["acc"], "same_acc": abs(acc - metrics["test"]["acc"]) < 1e-9,
            "same_items": None if not items else bool((decode_items(items) == correct).all())}
