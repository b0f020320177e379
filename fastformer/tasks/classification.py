"""Text classification task (Amazon, IMDB, MIND topics, any jsonl/csv): accuracy and macro-F1 (paper Table 4)."""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score

from fastformer.data.classification import load_classification, pad_collate
from fastformer.models.classifier import TextClassifier
from fastformer.tasks.base import Task, register_task
from fastformer.utils import item_record

log = logging.getLogger(__name__)


@register_task("classification")
class ClassificationTask(Task):
    def setup(self) -> None:
        self.ds = load_classification(self.cfg.data)  # truncated to data.max_len; pad_collate pads per batch
        self.max_len = int(self.cfg.data.max_len)
        log.info("classification data: %s", self.ds.info)

    def datasets(self) -> dict:
        return {"train": self.ds.train, "val": self.ds.val, "test": self.ds.test}

    def collate(self, split: str):
        return pad_collate

    def build_model(self) -> torch.nn.Module:
        m = self.cfg.model
        init = None
        if m.get("embedding_init", "random") == "glove":
            if not self.cfg.data.get("glove_path"):
                raise ValueError("model.embedding_init=glove needs data.glove_path (a local glove.*.txt; see "
                                 "data/README.md)")
            init = self.ds.embedding_init(int(m.d_model))
        return TextClassifier(vocab_size=len(self.ds.vocab), n_classes=self.ds.n_classes, max_len=self.max_len,
                              embedding_init=init, **self.encoder_kwargs())

    def training_step(self, model, batch) -> tuple[torch.Tensor, int]:
        logits = model(batch["input_ids"], batch["attention_mask"])  # (B, C)
        return F.cross_entropy(logits.float(), batch["labels"]), int(batch["attention_mask"].sum())

    def eval_outputs(self, model, split: str, batches, device) -> list:
        out = []
        for batch in batches[split]:
            pred = model(batch["input_ids"], batch["attention_mask"]).argmax(-1)
            index = batch["index"] if "index" in batch else torch.full_like(pred, -1)
            out.append((pred.cpu().numpy(), batch["labels"].cpu().numpy(), index.cpu().numpy()))
        return out

    def eval_metrics(self, outputs: list, split: str) -> dict[str, float]:
        p, y = np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs])
        if split == "test" and len(outputs[0]) > 2:  # per-item correctness for paired tests between rows
            self.test_items = item_record(np.concatenate([o[2] for o in outputs]), p == y, len(self.ds.test))
        return {"acc": 100.0 * accuracy_score(y, p),
                "macro_f1": 100.0 * f1_score(y, p, average="macro", labels=np.arange(self.ds.n_classes),
                                             zero_division=0),
                "majority_acc": 100.0 * float(np.bincount(y, minlength=self.ds.n_classes).max() / len(y))}

    def reference_metrics(self) -> dict[str, float]:
        """Non-neural references on the same split: majority class, and bag-of-words (TF-IDF over our token ids)
        logistic regression -- how much of the label is recoverable from word counts alone. A property of the split,
        not of the run: computed once per dataset (cached with the encoded data), not by every run of a sweep."""
        return self.ds.cached_json("references-v1", self._references)

    def _references(self) -> dict[str, float]:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        def docs(split):
            return [" ".join(map(str, ids)) for ids, _ in split], np.array([y for _, y in split])

        (xtr, ytr), (xte, yte) = docs(self.ds.train), docs(self.ds.test)
        vec = TfidfVectorizer(token_pattern=r"\S+", sublinear_tf=True)
        clf = LogisticRegression(max_iter=2000).fit(vec.fit_transform(xtr), ytr)
        pred = clf.predict(vec.transform(xte))
        majority = np.bincount(ytr, minlength=self.ds.n_classes).argmax()
        return {"bow_logreg_acc": 100.0 * accuracy_score(yte, pred),
                "bow_logreg_macro_f1": 100.0 * f1_score(yte, pred, average="macro", zero_division=0,
                                                        labels=np.arange(self.ds.n_classes)),
                "majority_acc": 100.0 * float(np.mean(yte == majority)),
                "majority_macro_f1": 100.0 * f1_score(yte, np.full_like(yte, majority), average="macro",
                                                      zero_division=0, labels=np.arange(self.ds.n_classes))}

    def data_info(self) -> dict:
        return dict(self.ds.info)

    def run_record(self) -> dict:
        """metrics.json's ``test_items``: which test items the reported (best-epoch) model got right, in dataset
        order (:func:`item_record`), for paired differences between rows (fastformer/results/stats.py)."""
        items = getattr(self, "test_items", None)
        return {"test_items": items} if items is not None else {}
