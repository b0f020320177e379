"""The ``Task`` contract between a task (data, model, loss, metrics) and the generic ``Trainer`` (the loop).

Subclasses implement::

    name: str                        # "classification" | "newsrec" | "summarization" | "probe" ...
    monitor: str                     # validation metric picking the best epoch (higher is better; set in configs/task)
    setup() -> None                  # load data; set self.train_loader / self.val_loader / self.test_loader
    build_model() -> nn.Module
    training_step(model, batch) -> (loss: scalar Tensor, n_tokens: int)
    evaluate(model, loader) -> dict[str, float]   # called by the Trainer under torch.no_grad() with model.eval()
    data_info() -> dict              # what data was actually used, e.g. {"data_used": "aclImdb 8-class ..."}
    reference_metrics() -> dict      # optional: non-neural references on the same split (metrics.json "baselines")
    train_dataset(epoch) -> Dataset  # optional: the training set of an epoch (default: train_loader.dataset every
                                     # epoch; the recall probes draw fresh sequences per epoch)

Batches are (nested) dicts / lists of tensors; the Trainer moves them to the device. The Trainer rebuilds the training
DataLoader from ``train_loader.dataset`` / ``.batch_size`` / ``.collate_fn`` with its own seeded (and, under DDP,
distributed) sampler, so epochs are reproducible and resumable; val/test loaders are used as given.
"""
from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader


class Task:
    name: str = "task"

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.monitor: str = cfg.task.get("monitor", "acc")
        self.train_loader: DataLoader | None = None
        self.val_loader: DataLoader | None = None
        self.test_loader: DataLoader | None = None
        self.run_dir: str | None = None  # set by the Trainer: where metrics.json and extra outputs go

    def setup(self) -> None:
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        raise NotImplementedError

    def data_info(self) -> dict:
        return {}

    def train_dataset(self, epoch: int):
        return self.train_loader.dataset

    def reference_metrics(self) -> dict[str, float]:
        return {}
