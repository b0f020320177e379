"""MIND splits -> the arrays news recommendation trains on (``load_mind_rec(cfg.data, model=cfg.model)``).

* one news table over the union of the splits' news.tsv files: ``tokens (N + 1, L)`` / ``mask`` with row 0 the
  padding news; titles tokenised by ``fastformer.data.text`` (vocabulary from the *training* news titles only) or, for
  ``model.news_encoder=hf``, by the checkpoint's own tokenizer; truncated to ``data.max_title_len`` (paper: 48);
* histories cut to the latest ``data.max_history`` clicks (paper: 50) and de-duplicated across impressions;
* impressions as news-row arrays (``cands``, ``labels``, ``pos``, ``neg``); unknown news ids are dropped and counted
  (see ``MindSplit.drop_unknown``), except in the ``predict`` split, where they map to the padding row so every
  candidate of the leaderboard file still gets a rank;
* ``data.version=synthetic`` with no synthetic data under ``data.root`` generates it (``data.synthetic``) into the
  cache.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastformer.data.mind import MindSplit, load_split, split_path
from fastformer.data.schema import options_from_cfg
from fastformer.data.synthetic_mind import make_synthetic_mind
from fastformer.data.text import Vocab, get_tokenizer, glove_init
from fastformer.utils import atomic_path

log = logging.getLogger(__name__)
_SPLIT_KEYS = {"train": "train_split", "val": "val_split", "test": "test_split", "predict": "predict_split"}


@dataclass(kw_only=True)
class MindRecOptions:
    """The newsrec ``data`` config node (configs/data/mind_rec.yaml documents each key); also the config schema's
    ``data`` keys for task=newsrec (fastformer/config_schema.py), so the two cannot drift."""
    name: str = "mind_rec"
    root: str = field(default_factory=lambda: os.environ.get("DATA_ROOT", "data"))
    version: str = "synthetic"                  # synthetic | small | large
    download: bool = False
    urls: dict[str, str] | None = None          # archive name (MINDlarge_train) -> download URL
    train_split: str = "train"
    val_split: str = "dev"
    test_split: str = "test"
    predict_split: str | None = None
    max_train_impressions: int | None = None
    max_eval_impressions: int | None = None
    max_history: int = 50
    max_title_len: int = 48
    tokenizer: str = "regex"
    max_vocab: int | None = None
    vocab_min_freq: int = 1
    glove_path: str | None = None
    seed: int = 0
    synthetic: dict[str, Any] | None = None     # fastformer/data/synthetic_mind.py options (+ auto_generate, news_tsv)

    @classmethod
    def from_cfg(cls, cfg: Any) -> MindRecOptions:
        return options_from_cfg(cls, cfg, example="mind_rec")

    def split(self, key: str) -> str | None:
        return getattr(self, key)


@dataclass
class MindRecData:
    tokens: torch.Tensor                 # (N + 1, L) title token ids; row 0 = padding news
    mask: torch.Tensor                   # (N + 1, L) bool, True = real token
    news_ids: list[str]                  # row -> news id ("" for row 0)
    user_hist: list[np.ndarray]          # history index -> news rows of the latest max_history clicks
    impressions: dict[str, list[dict]]   # "train" | "val" | "test" | "predict" -> impressions
    train_ctr: np.ndarray                # (N + 1,) training click-through rate, smoothed to the global CTR
    vocab: Vocab | None                  # None with an HF tokenizer
    vocab_size: int
    info: dict
    glove_path: str | None = None

    def embedding_init(self, d_model: int) -> torch.Tensor:
        if self.vocab is None or not self.glove_path:
            raise ValueError("model.embedding_init=glove needs data.glove_path (a local glove.*.txt) and word tokens")
        table, stats = glove_init(self.vocab, Path(self.glove_path), d_model)
        self.info["glove"] = stats
        return table


def _synthetic_root(d: MindRecOptions, cache_dir: str | None) -> tuple[Path, str]:
    """Root holding MINDsynthetic_* (data.root if there, else generated into the cache) and a description."""
    splits = [d.split(k) for k in _SPLIT_KEYS.values() if d.split(k)]
    if all(split_path(d.root, version="synthetic", split=s) for s in splits):
        info = Path(split_path(d.root, version="synthetic", split=splits[0])) / "synthetic_info.json"
        return Path(d.root), json.loads(info.read_text())["data_used"] if info.exists() else "synthetic MIND"
    s = dict(d.synthetic or {})
    if not s.pop("auto_generate", True):
        load_split(d.root, version="synthetic", split=splits[0])  # raises the actionable "not found" error
    news_tsv = s.pop("news_tsv", None)
    if news_tsv == "auto":
        cand = Path(d.root) / "mind" / "MINDsmall_sample" / "news.tsv"
        news_tsv = str(cand) if cand.is_file() else None
        if news_tsv is None:
            log.warning("synthetic MIND: %s not found, so titles are synthetic too (set data.synthetic.news_tsv)", cand)
    elif news_tsv is not None and not Path(news_tsv).is_file():
        raise FileNotFoundError(f"data.synthetic.news_tsv={news_tsv} does not exist; give a MIND news.tsv or null")
    counts = {k: int(s.pop(k)) for k in ("train", "dev", "test")}
    params = {"news_tsv": news_tsv, "impressions": counts, **s}
    key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    out = Path(cache_dir or Path(d.root) / ".cache") / "mind_synthetic" / key
    if not (out / "MINDsynthetic_test" / "synthetic_info.json").exists():
        with atomic_path(out, directory=True) as tmp:  # concurrent sweep jobs never see a half-written folder
            make_synthetic_mind(tmp, **params)  # (when another job finished first, its folder is kept)
        log.info("generated synthetic MIND in %s", out)
    return out, json.loads((out / "MINDsynthetic_test" / "synthetic_info.json").read_text())["data_used"]


def _check_impressions(role: str, sp: MindSplit, imps: list[dict], key: str, cap_key: str, cap: int | None) -> None:
    """One actionable ValueError before training: the training split needs a click beside a non-click (the
    click-vs-negatives samples), a labelled val/test split needs an impression with both (AUC is undefined
    otherwise)."""
    where = f"{sp.source}/behaviors.tsv" if sp.source else sp.name
    if not imps:
        raise ValueError(f"{where}: data.{cap_key}={cap} leaves the {role} split ({sp.name}, data.{key}) with 0 "
                         f"impressions; set it >= 1, or null for all {len(sp.impressions)}")
    if role == "predict":
        return  # only ranked (labels optional), never scored or trained on
    if any(imp["labels"] is None for imp in imps):
        raise ValueError(f"{where}: the {role} split ({sp.name}, data.{key}) is unlabelled (impressions like 'N1 N2' "
                         f"without -1/-0, as in MINDlarge_test), so it cannot be "
                         + ("trained on; set data.train_split=train" if role == "train" else
                            f"scored; set data.{key}=dev (and data.predict_split=test for the leaderboard "
                            f"prediction.txt)"))
    usable = sum(bool(len(imp["pos"]) and len(imp["neg"])) for imp in imps)
    if usable:
        return
    clicks = sum(len(imp["pos"]) for imp in imps)
    shown = sum(len(imp["cands"]) for imp in imps)
    need = ("training needs >= 1 impression with a click and a non-clicked candidate (one click-vs-negatives sample)"
            if role == "train" else "scoring needs >= 1 impression with a click and a non-click (AUC is undefined "
            "otherwise)")
    raise ValueError(f"{where}: none of the {len(imps)} impressions of the {role} split ({sp.name}, data.{key}) has "
                     f"both a click and a non-click ({clicks} clicks among {shown} candidates); {need}. Fix: check "
                     f"the impressions column (N123-1 N456-0 ...) or use another split")


def _cap(imps: list, n: int | None, seed: int) -> list:
    if n is None or n >= len(imps):
        return imps
    keep = np.sort(np.random.default_rng(seed).choice(len(imps), size=n, replace=False))
    return [imps[i] for i in keep]


def _tokenize(titles: list[str], train_titles: list[str], d: MindRecOptions,
              model: Any) -> tuple[torch.Tensor, torch.Tensor, Vocab | None, int, str]:
    L = int(d.max_title_len)
    if model is not None and model.get("news_encoder", "mixer") == "hf":
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(model.hf_path)
        enc = tok(titles, truncation=True, max_length=L, padding="max_length", return_tensors="pt")
        return enc["input_ids"].to(torch.int32), enc["attention_mask"].bool(), None, len(tok), f"hf:{model.hf_path}"
    split = get_tokenizer(d.tokenizer)
    vocab = Vocab.build((split(t) for t in train_titles), max_size=d.max_vocab, min_freq=int(d.vocab_min_freq))
    tokens = torch.zeros(len(titles), L, dtype=torch.int32)  # (N + 1, L)
    for i, t in enumerate(titles):
        ids = vocab.encode(split(t))[:L]
        tokens[i, :len(ids)] = torch.tensor(ids, dtype=torch.int32)
    return tokens, tokens != 0, vocab, len(vocab), d.tokenizer


def load_mind_rec(d: Any, *, model: Any = None, cache_dir: str | None = None) -> MindRecData:
    """Load train/val/test (and optional predict) splits of ``data.version`` and index them (module docstring)."""
    d = MindRecOptions.from_cfg(d)
    if d.version == "synthetic":
        root, used = _synthetic_root(d, cache_dir)
    else:
        root, used = Path(d.root), f"real MIND{d.version}"
    splits: dict[str, MindSplit] = {}
    for role, key in _SPLIT_KEYS.items():
        if d.split(key):
            splits[role] = load_split(root, version=d.version, split=d.split(key), download=bool(d.download),
                                      drop_unknown=role != "predict", urls=d.urls)
    news_ids, row = [""], {}
    for sp in splits.values():
        for nid in sp.news:
            if nid not in row:
                row[nid] = len(news_ids)
                news_ids.append(nid)
    titles = [""] + [next(sp.news[n] for sp in splits.values() if n in sp.news).title for n in news_ids[1:]]
    tokens, mask, vocab, vocab_size, tok_name = _tokenize(titles, [n.title for n in splits["train"].news.values()],
                                                          d, model)
    H, hist_index, user_hist = int(d.max_history), {}, []
    impressions: dict[str, list[dict]] = {}
    for role, sp in splits.items():
        cap = d.max_train_impressions if role == "train" else d.max_eval_impressions
        out = []
        for imp in _cap(sp.impressions, cap, int(d.seed)):
            h = tuple(row[n] for n in imp.history if n in row)[-H:] if H > 0 else ()
            if h not in hist_index:
                hist_index[h] = len(user_hist)
                user_hist.append(np.asarray(h, dtype=np.int64))
            cands = np.asarray([row.get(n, 0) for n in imp.candidates], dtype=np.int64)
            lab = None if imp.labels is None else np.asarray(imp.labels, dtype=np.int64)
            out.append({"id": imp.impression_id, "user": hist_index[h], "cands": cands, "labels": lab,
                        "pos": cands[lab == 1] if lab is not None else cands[:0],
                        "neg": cands[lab == 0] if lab is not None else cands[:0]})
        _check_impressions(role, sp, out, _SPLIT_KEYS[role],
                           "max_train_impressions" if role == "train" else "max_eval_impressions", cap)
        impressions[role] = out
    shows, clicks = np.zeros(len(news_ids)), np.zeros(len(news_ids))
    for imp in impressions["train"]:
        np.add.at(shows, imp["cands"], 1)
        np.add.at(clicks, imp["pos"], 1)
    prior = clicks.sum() / max(shows.sum(), 1)
    ctr = (clicks + 10.0 * prior) / (shows + 10.0)  # (N + 1,) smoothed with 10 pseudo-impressions at the global CTR
    test_name = splits["test"].name
    info = {"data_used": f"{used}; train {splits['train'].name}, val {splits['val'].name}, test {test_name}",
            "root": str(root), "tokenizer": tok_name, "vocab": vocab_size, "news": len(news_ids) - 1,
            "max_title_len": int(d.max_title_len), "max_history": H,
            **{f"{role}_impressions": len(v) for role, v in impressions.items()},
            "splits": {role: sp.summary() for role, sp in splits.items()}}
    log.info("MIND rec data: %s", {k: v for k, v in info.items() if k != "splits"})
    return MindRecData(tokens=tokens, mask=mask, news_ids=news_ids, user_hist=user_hist, impressions=impressions,
                       train_ctr=ctr, vocab=vocab, vocab_size=vocab_size, info=info, glove_path=d.glove_path)
