"""Synthetic probes (fastformer/data/probes.py) as a task: accuracy vs sequence length for every mixer.

Model: token embedding + learned positions -> ``Encoder(mixer)`` -> a head chosen by the probe's level:

* ``level="sequence"`` (dup, majority, listops): attention pooling + linear, the classification head of Table 4;
* ``level="token"`` (mqar): one linear layer per position; loss and accuracy only where a target is set. Training
  and evaluation compute the head only at those positions (``forward(..., at=target != IGNORE)``): with Zoology's
  8,192-way output (``mqar_zoology``) a head at every position would cost more than the rest of the model.

Causal probes (``data=probe_mqar_zoology_*``, configs/experiment/probe_causal/): the same model with every mixer built
``causal=True`` (``model.mixer.causal``), i.e. a causal language model asked for the next token at the query positions.

Matched budgets: every mixer gets the same embedding, positions, ``d_model``, ``n_heads``, ``n_layers``, FFN and head
(``configs/task/probe.yaml``); the mixers themselves differ in parameter count (e.g. Fastformer shares one mixer
across layers), which metrics.json records as ``params`` and ``results/probes.md`` reports beside each row.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from fastformer.data.probes import IGNORE, ProbeDataset, ProbeOptions, probe_info
from fastformer.models.classifier import TextClassifier
from fastformer.tasks.base import Task, register_task

log = logging.getLogger(__name__)


class ProbeModel(TextClassifier):
    """``forward(ids (B, N), mask (B, N)) -> logits (B, C)`` (sequence level) or ``(B, N, C)`` (token level)."""

    def __init__(self, *, level: str, **kw):
        super().__init__(**kw)
        if level not in ("token", "sequence"):
            raise ValueError(f"probe level={level!r} is not one of ['token', 'sequence']")
        self.level = level
        if level == "token":  # per-position classifier replaces the pooled head
            self.head = nn.Linear(kw["d_model"], kw["n_classes"])

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None,
                at: torch.Tensor | None = None) -> torch.Tensor:
        """``at`` (B, N) bool, token level only: logits at those positions only, (M, C) in row-major order."""
        h = self.encoder(self.embed(tokens), mask)  # (B, N, D)
        if self.level == "token":
            return self.head(h if at is None else h[at])  # (B, N, C) | (M, C)
        return self.head(h, mask)  # (B, C)


def probe_loss_and_correct(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Cross-entropy over the asked positions (token level: target != IGNORE) -> (loss, #correct, #asked)."""
    logits, target = logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1)  # (M, C), (M,)
    asked = target != IGNORE
    loss = F.cross_entropy(logits, target, ignore_index=IGNORE)
    correct = int((logits.argmax(-1)[asked] == target[asked]).sum())
    return loss, correct, int(asked.sum())


@register_task("probe")
class ProbeTask(Task):
    def setup(self) -> None:
        d = self.opts = ProbeOptions.from_cfg(self.cfg.data)  # the loader's options: one definition (config schema)
        self.kind, self.seq_len = str(d.probe), int(d.seq_len)
        self.params = d.params
        self.info = probe_info(self.kind, **self.params)
        sizes = {"train": int(d.n_train), "val": int(d.n_eval), "test": int(d.n_eval)}
        self.fresh = bool(d.fresh_per_epoch)
        self._splits = {s: ProbeDataset(self.kind, seq_len=self.seq_len, n_samples=n, seed=int(d.data_seed),
                                        split=s, **self.params) for s, n in sizes.items()}
        log.info("probe %s: seq_len=%d params=%s sizes=%s", self.kind, self.seq_len, self.params, sizes)

    def datasets(self) -> dict:
        return dict(self._splits)

    def train_dataset(self, epoch: int):
        """``fresh_per_epoch``: epoch ``e`` trains on items ``e * n_train .. (e + 1) * n_train - 1`` of the generator
        (never the same sequence twice: the models cannot memorise a fixed set); otherwise the same set every epoch."""
        if not self.fresh or epoch == 0:
            return self.dataset("train")
        d = self.opts
        return ProbeDataset(self.kind, seq_len=self.seq_len, n_samples=int(d.n_train), seed=int(d.data_seed),
                            split="train", start=epoch * int(d.n_train), **self.params)

    def build_model(self) -> nn.Module:
        return ProbeModel(level=self.info.level, vocab_size=self.info.vocab_size, n_classes=self.info.n_classes,
                          max_len=self.seq_len, **self.encoder_kwargs())

    def _logits_target(self, model, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Token level: logits and targets at the asked positions only; sequence level: the whole batch."""
        if self.info.level != "token":
            return model(batch["ids"], batch["mask"]), batch["target"]
        at = batch["target"] != IGNORE  # (B, N)
        return model(batch["ids"], batch["mask"], at=at), batch["target"][at]

    def training_step(self, model, batch) -> tuple[torch.Tensor, int]:
        loss, _, _ = probe_loss_and_correct(*self._logits_target(model, batch))
        return loss, int(batch["mask"].sum())

    def eval_outputs(self, model, split: str, batches, device) -> list[tuple[int, int, float]]:
        out = []
        for batch in batches[split]:
            loss, c, n = probe_loss_and_correct(*self._logits_target(model, batch))
            out.append((c, n, float(loss) * n))  # (correct, asked, summed loss) per batch
        return out

    def eval_metrics(self, outputs: list, split: str) -> dict[str, float]:
        correct, asked, loss_sum = (sum(o[i] for o in outputs) for i in range(3))
        return {"acc": 100.0 * correct / max(asked, 1), "loss": loss_sum / max(asked, 1)}

    def data_info(self) -> dict:
        return {"data_used": f"synthetic probe {self.kind} (fastformer/data/probes.py)", "probe": self.kind,
                "seq_len": self.seq_len, "params": self.params, "level": self.info.level,
                "vocab_size": self.info.vocab_size, "n_classes": self.info.n_classes,
                "data_seed": int(self.cfg.data.data_seed), "fresh_per_epoch": self.fresh,
                "n_train": int(self.cfg.data.n_train),
                "causal": bool(self.cfg.model.mixer.get("causal", False)),
                "lr": float(self.cfg.optimizer.lr), "weight_decay": float(self.cfg.optimizer.get("weight_decay", 0)),
                "d_model": int(self.cfg.model.d_model)}
