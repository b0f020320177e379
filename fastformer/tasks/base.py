"""The ``Task`` contract between a task (data, model, loss, metrics) and the generic ``Trainer`` (the loop).

A task **declares**; the Trainer **runs**. A subclass implements::

    name: str                          # "classification" | "newsrec" | "summarization" | "probe" ...
    monitor: str                       # validation metric picking the best epoch (higher is better; configs/task)
    setup() -> None                    # load / build the data (nothing else: no loaders, no model)
    datasets() -> {split: Dataset}     # at least "train", "val", "test"; extra named splits are allowed
                                       # (summarization: "val_rouge", the decoded validation subset; MIND: "predict")
    collate(split) -> callable | None  # the collate function of a split (None: torch's default)
    build_model() -> nn.Module         # use self.encoder_kwargs() for the parts every task shares
    training_step(model, batch) -> (loss: scalar Tensor, n_tokens: int)   # batch is already on the device
    eval_outputs(model, split) -> list # picklable records of the split (per batch or per item), under
                                       # torch.no_grad() + model.eval() (the Trainer sets both); iterate with
                                       # self.batches(split, device): device-moved batches of the loader the
                                       # Trainer built for that split -- under DDP this rank's shard of it
    eval_metrics(outputs, split) -> {name: float}   # metrics from ALL the split's records (any order): under DDP
                                       # the Trainer gathers every rank's records first, so the metrics equal a
                                       # 1-process evaluation
    evaluate(model, split)             # = eval_metrics(eval_outputs(model, split), split) in one process; a task
                                       # may override evaluate alone instead (then DDP evaluates it on rank 0)
Optional::

    train_dataset(epoch) -> Dataset    # the training set of an epoch (default: datasets()["train"] every epoch;
                                       # the recall probes draw fresh sequences per epoch)
    data_info() -> dict                # what data was actually used, e.g. {"data_used": "aclImdb 8-class ..."}
    reference_metrics() -> dict        # non-neural references on the same split (metrics.json "baselines")
    run_record() -> dict               # extra metrics.json fields after the test evaluation (per-item records)
    write_outputs(run_dir) -> None     # after the final test evaluation: inspectable outputs (test summaries)
    predict(model, run_dir) -> dict    # ``predict=true``: a prediction file (MIND leaderboard prediction.txt)

The Trainer owns everything else: it builds every DataLoader through :func:`build_loader` (batch sizes
``task.batch_size`` / ``task.eval_batch_size``, ``task.num_workers``, a seeded sampler per epoch, under DDP the
global-batch sampler and sharded evaluation (fastformer/train/distributed.py), ``pin_memory`` on CUDA), moves
batches to the device, checkpoints and resumes, reloads the best epoch, evaluates ``val`` and ``test``, calls the
hooks and writes ``metrics.json``. ``scripts/train.py`` only composes the config and calls the Trainer. Used outside
a Trainer (tests, notebooks), ``loader(split)`` builds a plain loader with the same function.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

SPLITS = ("train", "val", "test")  # the splits every task declares


def to_device(batch: Any, device: torch.device | str) -> Any:
    """Tensors of a (nested) dict / list / tuple batch moved to ``device``; other leaves unchanged."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def build_loader(task: Task, split: str, *, dataset: Dataset | None = None, sampler: Sampler | None = None,
                 batch_size: int | None = None, pin_memory: bool = False,
                 batch_sampler: Sampler | None = None) -> DataLoader:
    """The one DataLoader builder: ``split``'s dataset (or ``dataset``), the task's collate function, the task
    config's batch size (``batch_size`` for train, ``eval_batch_size`` otherwise; ``batch_size`` replaces it, e.g. a
    DDP rank's share) and ``num_workers``; evaluation splits keep their order (no shuffling), the training order
    comes from ``sampler`` (the Trainer's seeded one), or whole batches from ``batch_sampler`` (length-grouped)."""
    tc = task.cfg.task
    ds = dataset if dataset is not None else task.dataset(split)
    if batch_sampler is not None:
        return DataLoader(ds, batch_sampler=batch_sampler, collate_fn=task.collate(split),
                          num_workers=int(tc.get("num_workers") or 0), pin_memory=pin_memory)
    bs = batch_size or (int(tc.batch_size) if split == "train" else int(tc.get("eval_batch_size") or tc.batch_size))
    return DataLoader(ds, batch_size=bs, sampler=sampler, shuffle=False, collate_fn=task.collate(split),
                      num_workers=int(tc.get("num_workers") or 0), pin_memory=pin_memory, drop_last=False)


class Task:
    name: str = "task"

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.monitor: str = cfg.task.get("monitor", "acc")
        self._datasets: dict[str, Dataset] | None = None
        self._loader_fn: Callable[[str], DataLoader] | None = None  # bound by the Trainer

    # ------------------------------------------------------------------------------------------- to implement
    def setup(self) -> None:
        raise NotImplementedError

    def datasets(self) -> dict[str, Dataset]:
        raise NotImplementedError

    def collate(self, split: str) -> Callable | None:
        return None

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def eval_outputs(self, model: nn.Module, split: str) -> list:
        raise NotImplementedError

    def eval_metrics(self, outputs: list, split: str) -> dict[str, float]:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        return self.eval_metrics(self.eval_outputs(model, split), split)

    @classmethod
    def shards_evaluation(cls) -> bool:
        """Whether the Trainer may shard this task's evaluation over DDP ranks (it implements the two parts)."""
        return cls.eval_outputs is not Task.eval_outputs and cls.eval_metrics is not Task.eval_metrics

    # ------------------------------------------------------------------------------------------- optional
    def train_dataset(self, epoch: int) -> Dataset:
        return self.dataset("train")

    def data_info(self) -> dict:
        return {}

    def reference_metrics(self) -> dict[str, float]:
        return {}

    def run_record(self) -> dict:
        """Extra JSON-able fields for metrics.json, read after the final test evaluation (classification: the
        per-item test correctness behind paired differences between rows)."""
        return {}

    def write_outputs(self, run_dir: str) -> None:
        """Called once after the final test evaluation, with the run dir (default: nothing to write)."""

    def predict(self, model: nn.Module, run_dir: str) -> dict:
        raise NotImplementedError(f"task {self.name!r} has no prediction-file writer (predict=true)")

    @classmethod
    def can_predict(cls) -> bool:
        return cls.predict is not Task.predict

    # ------------------------------------------------------------------------------------------- provided
    def dataset(self, split: str) -> Dataset:
        if self._datasets is None:
            self._datasets = self.datasets()
            missing = [s for s in SPLITS if s not in self._datasets]
            if missing:
                raise ValueError(f"task {self.name!r}: datasets() has no {missing} split(s); it must declare {SPLITS}")
        if split not in self._datasets:
            raise KeyError(f"task {self.name!r} has no split {split!r}; it has {sorted(self._datasets)}")
        return self._datasets[split]

    def has_split(self, split: str) -> bool:
        self.dataset("train")  # materialise the declaration
        return split in self._datasets

    def bind_loaders(self, loader_fn: Callable[[str], DataLoader] | None) -> None:
        """The Trainer's loader factory (split -> DataLoader); ``None`` restores the plain default."""
        self._loader_fn = loader_fn

    def loader(self, split: str) -> DataLoader:
        """The loader of an evaluation split: the Trainer's when bound, else a plain one (:func:`build_loader`)."""
        return self._loader_fn(split) if self._loader_fn is not None else build_loader(self, split)

    def batches(self, split: str, device: torch.device | str) -> Iterator[Any]:
        """The batches of ``split``, moved to ``device``."""
        for batch in self.loader(split):
            yield to_device(batch, device)

    def encoder_kwargs(self) -> dict[str, Any]:
        """What every task's model takes from ``cfg.model``: width, heads, dropout, mixer (+ its kwargs), encoder."""
        m = self.cfg.model
        mixer_kwargs = OmegaConf.to_container(m.mixer, resolve=True)
        return {"d_model": int(m.d_model), "n_heads": int(m.n_heads), "mixer": mixer_kwargs.pop("name"),
                "mixer_kwargs": mixer_kwargs, "dropout": float(m.dropout),
                "encoder": OmegaConf.to_container(m.encoder, resolve=True)}
