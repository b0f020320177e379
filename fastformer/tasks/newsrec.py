"""News recommendation on MIND (paper Table 5): NRMS-style training, per-impression AUC / MRR / nDCG@5 / nDCG@10.

* training: one sample per click of a training impression; ``K`` (``task.neg_k``, NRMS: 4) non-clicked news of the
  same impression are drawn as negatives (with replacement when the impression has fewer), and the loss is the
  softmax cross-entropy over the 1 + K scores with the click as target. Impressions without a non-click give no sample.
* evaluation: every news vector a split needs is computed once per call (cached), then each impression's candidates
  are scored against its user vector. Baselines scored on the same impressions: ``pop_*`` (training CTR of the news,
  smoothed towards the global CTR) and ``rand_*`` (seeded uniform scores).
* ``predict(model, path)`` writes the leaderboard ``prediction.txt`` (see fastformer.metrics.ranking).
Metrics are reported in percent, as in the paper.
"""
from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from fastformer.data.mind_rec import MindRecData, load_mind_rec
from fastformer.metrics.ranking import (
    METRIC_KEYS,
    mean_impression_metrics,
    score_prediction_file,
    write_prediction,
    write_truth,
)
from fastformer.models.newsrec import NewsRecModel
from fastformer.tasks.base import Task, register_task

log = logging.getLogger(__name__)


class ClickDataset(Dataset):
    """Training samples ``(history rows, [click row] + K negative rows)``; negatives redrawn on every access."""

    def __init__(self, data: MindRecData, split: str, neg_k: int):
        self.hist, self.neg_k = data.user_hist, neg_k
        self.imps = data.impressions[split]
        self.samples = [(i, r) for i, imp in enumerate(self.imps) if len(imp["neg"]) for r in imp["pos"]]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        imp_i, pos = self.samples[i]
        neg = self.imps[imp_i]["neg"]
        pick = (torch.randperm(len(neg))[: self.neg_k] if len(neg) >= self.neg_k
                else torch.randint(len(neg), (self.neg_k,)))  # uses the Trainer-seeded torch RNG
        return self.hist[self.imps[imp_i]["user"]], np.concatenate([[pos], neg[pick.numpy()]])


class ImpressionDataset(Dataset):
    """Evaluation items ``(impression index, history rows, candidate rows, labels or None)``."""

    def __init__(self, data: MindRecData, split: str):
        self.hist, self.imps = data.user_hist, data.impressions[split]
        rows = [np.zeros(1, dtype=np.int64)] + [imp["cands"] for imp in self.imps] + \
               [self.hist[u] for u in {imp["user"] for imp in self.imps}]
        self.news_rows = np.unique(np.concatenate(rows))  # every news row this split scores (incl. 0 = padding)

    def __len__(self) -> int:
        return len(self.imps)

    def __getitem__(self, i: int):
        imp = self.imps[i]
        return i, self.hist[imp["user"]], imp["cands"], imp["labels"]


def _pad(seqs: list[np.ndarray], fill: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Variable-length int arrays -> (B, max(len, 1)) long padded with ``fill`` + (B, ·) bool mask."""
    n = max([len(s) for s in seqs] + [1])
    out = torch.full((len(seqs), n), fill, dtype=torch.long)
    mask = torch.zeros(len(seqs), n, dtype=torch.bool)
    for i, s in enumerate(seqs):
        out[i, :len(s)], mask[i, :len(s)] = torch.as_tensor(s, dtype=torch.long), True
    return out, mask


def _titles(data: MindRecData, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """News rows (M,) -> tokens (M, L') and mask (M, L'), trimmed to the longest title among them."""
    tokens, mask = data.tokens[rows], data.mask[rows]  # (M, L)
    width = max(int(mask.sum(1).max()), 1)
    return tokens[:, :width].long(), mask[:, :width]


def collate_clicks(items, data: MindRecData) -> dict[str, torch.Tensor]:
    """De-duplicates titles: news_tokens/mask (U, L'), hist_idx/hist_mask (B, H), cand_idx (B, 1+K), target (B,)."""
    hists, cands = zip(*items)
    rows = np.unique(np.concatenate([[0], *hists, *cands]))  # (U,), row 0 (padding) first
    hist_rows, hist_mask = _pad(list(hists))  # (B, H) global rows, padded with row 0
    hist_idx = torch.as_tensor(np.searchsorted(rows, hist_rows.numpy()))  # (B, H) into rows
    cand_idx = torch.as_tensor(np.searchsorted(rows, np.stack(cands)))  # (B, 1+K)
    tokens, mask = _titles(data, torch.as_tensor(rows))
    return {"news_tokens": tokens, "news_mask": mask, "hist_idx": hist_idx, "hist_mask": hist_mask,
            "cand_idx": cand_idx, "target": torch.zeros(len(items), dtype=torch.long)}


def collate_impressions(items) -> dict[str, torch.Tensor]:
    idx, hists, cands, labels = zip(*items)
    hist, hist_mask = _pad(list(hists))  # (B, H) global news rows
    cand, cand_mask = _pad(list(cands))  # (B, C)
    lab, _ = _pad([np.asarray(y if y is not None else [], dtype=np.int64) for y in labels], fill=-1)
    return {"index": torch.tensor(idx), "hist": hist, "hist_mask": hist_mask, "cand": cand, "cand_mask": cand_mask,
            "labels": lab}


@register_task("newsrec")
class NewsRecTask(Task):
    def setup(self) -> None:
        cfg = self.cfg
        self.data = load_mind_rec(cfg.data, model=cfg.model, cache_dir=cfg.paths.get("cache_dir"))
        self._baselines: dict[str, dict[str, float]] = {}

    def datasets(self) -> dict:
        out = {"train": ClickDataset(self.data, "train", int(self.cfg.task.neg_k))}
        out.update({s: ImpressionDataset(self.data, s) for s in ("val", "test", "predict")
                    if s in self.data.impressions})
        return out

    def collate(self, split: str):
        return partial(collate_clicks, data=self.data) if split == "train" else collate_impressions

    def build_model(self) -> torch.nn.Module:
        m = self.cfg.model
        init = self.data.embedding_init(int(m.d_model)) if m.get("embedding_init", "random") == "glove" else None
        return NewsRecModel(vocab_size=self.data.vocab_size, max_title_len=int(self.cfg.data.max_title_len),
                            max_history=int(self.cfg.data.max_history), news_encoder=m.news_encoder,
                            hf_path=m.get("hf_path"), embedding_init=init, **self.encoder_kwargs())

    def training_step(self, model, batch) -> tuple[torch.Tensor, int]:
        scores = model(batch["news_tokens"], batch["news_mask"], batch["hist_idx"], batch["hist_mask"],
                       batch["cand_idx"])  # (B, 1+K)
        return F.cross_entropy(scores.float(), batch["target"]), int(batch["news_mask"].sum())

    # ------------------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def score_split(self, model, split: str, batches, dev) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        """[(impression index, scores (C,), labels (C,) or None)] of ``batches`` (``split``'s impressions on the
        device ``dev``) with each news vector computed once."""
        rows = torch.as_tensor(self.dataset(split).news_rows)
        cache = None
        bs = int(self.cfg.task.get("news_batch_size", 512))
        for chunk in rows.split(bs):  # news vectors of every row the split needs, once
            tokens, mask = _titles(self.data, chunk)
            vecs = model.encode_news(tokens.to(dev), mask.to(dev)).float()  # (M, D)
            if cache is None:
                cache = torch.zeros(len(self.data.tokens), vecs.shape[1], device=dev)  # (N + 1, D)
            cache[chunk.to(dev)] = vecs
        out = []
        for b in batches:
            user = model.encode_user(cache[b["hist"]], b["hist_mask"])  # (B, D)
            scores = model.score(user, cache[b["cand"]]).float().cpu().numpy()  # (B, C); bf16 under autocast
            cand_mask, labels = b["cand_mask"].cpu(), b["labels"].cpu()
            for j, i in enumerate(b["index"].tolist()):
                n = int(cand_mask[j].sum())
                lab = labels[j, :n].numpy()
                out.append((i, scores[j, :n], None if (lab < 0).any() else lab))
        return out

    def _metrics(self, pairs) -> dict[str, float]:
        m = mean_impression_metrics(pairs)
        return {**{k: 100.0 * m[k] for k in METRIC_KEYS}, "n_impressions": m["n_impressions"],
                "n_single_class": m["n_single_class"]}

    def baselines(self, split: str) -> dict[str, float]:
        """Popularity (smoothed training CTR) and random scores on the split's impressions (cached per split)."""
        if split not in self._baselines:
            imps, ctr = self.dataset(split).imps, self.data.train_ctr
            rng = np.random.default_rng(int(self.cfg.seed))
            pop = self._metrics([(imp["labels"], ctr[imp["cands"]]) for imp in imps if imp["labels"] is not None])
            rnd = self._metrics([(imp["labels"], rng.random(len(imp["cands"]))) for imp in imps
                                 if imp["labels"] is not None])
            self._baselines[split] = {**{f"pop_{k}": pop[k] for k in METRIC_KEYS},
                                      **{f"rand_{k}": rnd[k] for k in METRIC_KEYS}}
        return self._baselines[split]

    def eval_outputs(self, model, split: str, batches, device) -> list:
        return self.score_split(model, split, batches[split], device)

    def eval_metrics(self, outputs: list, split: str) -> dict[str, float]:
        if any(lab is None for _, _, lab in outputs):
            raise ValueError("evaluation split has unlabelled impressions (MINDlarge_test): set data.test_split=dev "
                             "and data.predict_split=test, then call predict() for the leaderboard file")
        return {**self._metrics([(lab, s) for _, s, lab in outputs]), **self.baselines(split)}

    def predict_split(self) -> str:
        return "predict" if self.has_split("predict") else "test"  # data.predict_split if set, else test

    def predict(self, model, run_dir: str | Path, batches=None, device=None) -> dict:
        """Write ``prediction.txt`` for :meth:`predict_split`, in file order; with labels also ``truth.txt`` and the
        official script's scores of the prediction file. Without ``batches``: plain loaders on the model's device."""
        split = self.predict_split()
        device = device if device is not None else next(model.parameters()).device
        batches = batches if batches is not None else self.plain_batches([split], device)
        model.eval()
        scored = sorted(self.score_split(model, split, batches[split], device), key=lambda t: t[0])
        imps = self.dataset(split).imps
        pred = write_prediction(Path(run_dir) / "prediction.txt", [(imps[i]["id"], s) for i, s, _ in scored])
        log.info("wrote %s (%d impressions of the %s split)", pred, len(scored), split)
        if any(lab is None for _, _, lab in scored):
            return {"prediction": str(pred)}
        truth = write_truth(Path(run_dir) / "truth.txt", [(imps[i]["id"], lab.tolist()) for i, _, lab in scored])
        return {"prediction": str(pred), "truth": str(truth), **score_prediction_file(truth, pred)}

    def data_info(self) -> dict:
        return dict(self.data.info)
