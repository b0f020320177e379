"""The ``Task`` contract between a task (data, model, loss, metrics) and the generic ``Trainer`` (the loop).

A task **declares**; the Trainer **runs**, and calls the task one way only (the task never calls the Trainer back).
A subclass registers under its config name (``@register_task("classification")``; configs/task/<name>.yaml
``name:`` picks it, :func:`build_task`) and implements::

    name: str                          # "classification" | "newsrec" | "summarization" | "probe" ...
    monitor: str                       # validation metric picking the best epoch (higher is better; configs/task)
    setup() -> None                    # load / build the data (nothing else: no loaders, no model)
    datasets() -> {split: Dataset}     # at least "train", "val", "test"; extra named splits are allowed
                                       # (summarization: "val_rouge", the decoded validation subset; MIND: "predict")
    collate(split) -> callable | None  # the collate function of a split (None: torch's default)
    build_model() -> nn.Module         # use self.encoder_kwargs() for the parts every task shares
    training_step(model, batch) -> (loss: scalar Tensor, n_tokens: int)   # batch is already on the device
    eval_outputs(model, split, batches, device) -> list
                                       # picklable records of the split (per batch or per item), under
                                       # torch.no_grad() + model.eval() (the caller sets both). ``batches`` maps
                                       # each split of eval_splits(split) to its batches, already on ``device``:
                                       # the loaders the Trainer built -- under DDP this rank's shard of them
    eval_metrics(outputs, split) -> {name: float}   # metrics from ALL the split's records (any order): under DDP
                                       # the Trainer gathers every rank's records first, so the metrics equal a
                                       # 1-process evaluation
Optional::

    eval_splits(split) -> tuple        # the splits evaluating ``split`` reads (default: (split,); summarization's
                                       # val also decodes "val_rouge")
    train_dataset(epoch) -> Dataset    # the training set of an epoch (default: datasets()["train"] every epoch;
                                       # the recall probes draw fresh sequences per epoch)
    data_info() -> dict                # what data was actually used, e.g. {"data_used": "aclImdb 8-class ..."}
    reference_metrics() -> dict        # non-neural references on the same split (metrics.json "baselines")
    run_record() -> dict               # extra metrics.json fields after the test evaluation (per-item records)
    write_outputs(run_dir) -> None     # after the final test evaluation: inspectable outputs (test summaries)
    predict_split() -> str             # the split ``predict`` writes (default "test")
    predict(model, run_dir, batches, device) -> dict   # ``predict=true``: a prediction file (MIND prediction.txt);
                                       # ``batches`` as in eval_outputs, for predict_split(), whole (never sharded)

Provided: ``evaluate(model, split, batches=None, device=None)`` = eval_metrics(eval_outputs(...), split) in one
process; without ``batches`` it builds plain loaders (:func:`build_loader`, :func:`device_batches`) on the model's
device -- for tests and notebooks, outside a Trainer. ``loader(split)`` is such a plain loader.

The Trainer owns everything else: it builds every DataLoader through :func:`build_loader` (batch sizes
``task.batch_size`` / ``task.eval_batch_size``, ``task.num_workers``, a seeded sampler per epoch, under DDP the
global-batch sampler and sharded evaluation (fastformer/train/distributed.py), ``pin_memory`` on CUDA), moves
batches to the device, checkpoints and resumes, reloads the best epoch, evaluates ``test`` (the best epoch's ``val``
comes from its history), calls the hooks and writes ``metrics.json``. ``scripts/train.py`` only composes the config,
sets up the process group and the device once (:func:`fastformer.train.distributed.setup_distributed`), builds the
task by name and calls the Trainer.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

SPLITS = ("train", "val", "test")  # the splits every task declares

#: task name (configs/task/<name>.yaml ``name:``) -> Task class; filled by :func:`register_task`
TASKS: dict[str, type[Task]] = {}

#: what ``eval_outputs`` / ``predict`` read: split -> its batches, already on the device
Batches = Mapping[str, Iterable[Any]]


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: ``@register_task("classification")`` makes the class the task of ``task.name``."""
    def deco(cls: type[Task]) -> type[Task]:
        if name in TASKS and TASKS[name] is not cls:
            raise ValueError(f"task {name!r} is registered twice ({TASKS[name].__qualname__}, {cls.__qualname__})")
        cls.name = name
        TASKS[name] = cls
        return cls
    return deco


def build_task(cfg: DictConfig) -> Task:
    """The registered task named ``cfg.task.name``, constructed from the whole run config."""
    import fastformer.tasks  # noqa: F401  (registers every task)

    name = str(cfg.task.name)
    if name not in TASKS:
        raise ValueError(f"task.name={name!r} is not one of {sorted(TASKS)}")
    return TASKS[name](cfg)


def to_device(batch: Any, device: torch.device | str) -> Any:
    """Tensors of a (nested) dict / list / tuple batch moved to ``device``; other leaves unchanged."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class device_batches:  # noqa: N801  (reads as a function; re-iterable, unlike a generator)
    """The batches of ``loader`` moved to ``device``, anew on every iteration."""

    def __init__(self, loader: Iterable[Any], device: torch.device | str):
        self.loader, self.device = loader, device

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield to_device(batch, self.device)

    def __len__(self) -> int:
        return len(self.loader)


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

    def eval_outputs(self, model: nn.Module, split: str, batches: Batches, device: torch.device) -> list:
        raise NotImplementedError

    def eval_metrics(self, outputs: list, split: str) -> dict[str, float]:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------- optional
    def eval_splits(self, split: str) -> tuple[str, ...]:
        """The splits whose batches evaluating ``split`` reads (``eval_outputs``' ``batches`` keys)."""
        return (split,)

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

    def predict_split(self) -> str:
        """The split ``predict`` writes a prediction file for."""
        return "test"

    def predict(self, model: nn.Module, run_dir: str, batches: Batches, device: torch.device) -> dict:
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

    def loader(self, split: str) -> DataLoader:
        """A plain loader of ``split`` (:func:`build_loader`), for use outside a Trainer."""
        return build_loader(self, split)

    def plain_batches(self, splits: Iterable[str], device: torch.device | str) -> dict[str, device_batches]:
        """``batches`` for ``eval_outputs`` / ``predict`` outside a Trainer: plain loaders of ``splits``."""
        return {s: device_batches(self.loader(s), device) for s in splits}

    def evaluate(self, model: nn.Module, split: str, batches: Batches | None = None,
                 device: torch.device | None = None) -> dict[str, float]:
        """The metrics of ``split`` in one process. The Trainer passes its own ``batches`` and ``device``; without
        them (tests, notebooks) the batches come from plain loaders on the model's device."""
        if device is None:
            device = next(model.parameters()).device
        if batches is None:
            batches = self.plain_batches(self.eval_splits(split), device)
        return self.eval_metrics(self.eval_outputs(model, split, batches, device), split)

    def encoder_kwargs(self) -> dict[str, Any]:
        """What every task's model takes from ``cfg.model``: width, heads, dropout, mixer (+ its kwargs), encoder."""
        m = self.cfg.model
        mixer_kwargs = OmegaConf.to_container(m.mixer, resolve=True)
        return {"d_model": int(m.d_model), "n_heads": int(m.n_heads), "mixer": mixer_kwargs.pop("name"),
                "mixer_kwargs": mixer_kwargs, "dropout": float(m.dropout),
                "encoder": OmegaConf.to_container(m.encoder, resolve=True)}
