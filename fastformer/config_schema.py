"""Config schemas: every key of a composed run config is checked before any data is read.

The YAML files under configs/ stay the place where values live; these dataclasses say which keys exist and, for the
trainer, logger and task, of which type. ``validate_config(cfg)`` (called first thing by scripts/train.py's
``train``) merges each group onto its schema with OmegaConf's structured-config checks, so a typo anywhere -- on the
command line (``trainer.max_epoch=3`` with ``+``), in an experiment file or in ``configs/local/default.yaml`` -- stops
the run with one line naming the key and the valid ones, instead of being silently ignored by a ``.get(..., default)``.

* ``model.mixer``: the keyword arguments of the registered mixer's constructor (``fastformer.mixers.mixer_kwargs``);
* ``model.encoder``: the keyword arguments of ``fastformer.models.encoder.Encoder`` that a config may set;
* ``optimizer``: ``_target_`` / ``_partial_`` plus the optimizer class's own arguments;
* ``data`` and ``task``: one schema per task (``task.name``); the ``data`` keys are read from each loader's own options
  dataclass (``DataOptions`` in fastformer/data/schema.py, ``MindRecOptions`` in mind_rec.py, ``SummarizationOptions``
  in summarization.py, ``ProbeOptions`` in probes.py), so the two cannot drift: a key added to a loader's options is a
  valid config key, with nothing here to update.
Adding a config key means adding it here too (tests/test_config_schema.py composes every experiment under every
preset and checks that each validates).
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from fastformer.data.mind_rec import MindRecOptions
from fastformer.data.probes import ProbeOptions
from fastformer.data.schema import DataOptions
from fastformer.data.summarization import SummarizationOptions
from fastformer.errors import UserInputError

# NB: Optional[...] / Any rather than ``X | None``: OmegaConf reads these annotations at runtime (Python 3.10).


@dataclass
class TrainerSchema:
    device: str = "auto"
    precision: str = "auto"
    max_epochs: int = 3
    grad_clip: float | None = None
    limit_train_batches: int | None = None
    log_every: int = 50
    progress_bar: bool = True
    resume: bool = True
    stop_after_epochs: int | None = None
    cpu_dropout: str = "fast"
    threads: int | None = None
    stop_at: float | None = None  # stop when the validation monitor reaches it (not in default.yaml: old runs' hashes)


@dataclass
class LoggerSchema:
    kind: str = "none"
    project: str | None = None
    entity: str | None = None
    mode: str = "offline"
    group: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    artifacts: bool = False
    job_type: str | None = None


@dataclass
class PathsSchema:
    root_dir: str = "."
    data_root: str = "data"
    log_dir: str = "logs"
    results_dir: str = "results"
    cache_dir: str = "data/.cache"


@dataclass
class TaskSchema:
    _target_: str = ""  # informational (the class TASKS gives ``name``); kept so existing config hashes are unchanged
    name: str = ""
    monitor: str = "acc"
    batch_size: int = 64
    eval_batch_size: int = 128
    num_workers: int = 0
    group_by_length: bool = False  # length-grouped training batches + longest-first evaluation (train/sampling.py)
    length_pool: int = 50          # global batches per length-sorted pool


@dataclass
class NewsRecTaskSchema(TaskSchema):
    neg_k: int = 4
    news_batch_size: int = 512


@dataclass
class GenerateSchema:
    beam: int = 5
    length_penalty: float = 1.0
    min_len: int = 0
    max_len: int | None = None
    no_repeat_ngram: int = 3


@dataclass
class SummarizationTaskSchema(TaskSchema):
    label_smoothing: float = 0.0
    val_rouge_docs: int = 200
    generate: GenerateSchema = field(default_factory=GenerateSchema)


@dataclass
class ModelSchema:  # mixer and encoder are checked against the code's signatures (below)
    d_model: int = 256
    n_heads: int = 16
    dropout: float = 0.2
    embedding_init: str | None = None
    encoder: dict[str, Any] = field(default_factory=dict)
    mixer: dict[str, Any] = field(default_factory=dict)


@dataclass
class NewsRecModelSchema(ModelSchema):
    news_encoder: str = "mixer"
    hf_path: str | None = None


@dataclass
class Seq2SeqModelSchema(ModelSchema):
    dec_layers: int = 4
    dec_d_ff: int = 1024
    attn_dropout: float = 0.0
    tie_embeddings: bool = True
    decoder_mixer: dict[str, Any] = field(default_factory=dict)  # {} = softmax; else {name: <causal mixer>, ...}


def _loader_keys(options_cls, name: str):
    """The ``data`` schema of a loader whose options are a dataclass in its own module: the same keys, read from that
    dataclass (one definition: a key added to the loader is a valid config key, with nothing here to update). Values
    vary per dataset, so they are typed ``Any`` here; the loader's own ``from_cfg`` checks what it needs."""
    return dataclasses.make_dataclass(name, [(f.name, Any, None) for f in dataclasses.fields(options_cls)])


ClassificationDataSchema = _loader_keys(DataOptions, "ClassificationDataSchema")  # fastformer/data/schema.py
NewsRecDataSchema = _loader_keys(MindRecOptions, "NewsRecDataSchema")  # fastformer/data/mind_rec.py
SummarizationDataSchema = _loader_keys(SummarizationOptions, "SummarizationDataSchema")  # data/summarization.py
ProbeDataSchema = _loader_keys(ProbeOptions, "ProbeDataSchema")  # fastformer/data/probes.py


TASK_SCHEMAS = {"classification": (TaskSchema, ClassificationDataSchema, ModelSchema),
                "newsrec": (NewsRecTaskSchema, NewsRecDataSchema, NewsRecModelSchema),
                "summarization": (SummarizationTaskSchema, SummarizationDataSchema, Seq2SeqModelSchema),
                "probe": (TaskSchema, ProbeDataSchema, ModelSchema)}
TOP_LEVEL = {"seed", "experiment_name", "row", "skip_finished", "predict", "preset_name", "trainer", "optimizer",
             "logger", "paths", "task", "data", "model", "hydra"}
# Encoder arguments a config must not set: the task passes them
_ENCODER_FROM_TASK = {"self", "d_model", "n_heads", "mixer", "mixer_kwargs", "dropout", "max_len"}
_WHERE = "(from the command line, an experiment / preset / sweep file, or configs/local/default.yaml)"


class ConfigError(UserInputError):
    """An unknown or mistyped config key, before any data is read."""


def _keys(schema) -> list[str]:
    return [f.name for f in dataclasses.fields(schema)]


def _unknown(path: str, keys, valid) -> None:
    bad = sorted(set(keys) - set(valid))
    if bad:
        raise ConfigError(f"unknown config key {path}.{bad[0]} {_WHERE}; valid keys under {path}: "
                          f"{', '.join(sorted(valid))}")


def _check(path: str, node: Any, schema) -> None:
    """``node`` (a resolved dict) against a dataclass: unknown keys and wrong types, as one line."""
    if not isinstance(node, dict):
        raise ConfigError(f"config key {path} must be a mapping, got {node!r}")
    _unknown(path, node, _keys(schema))
    try:
        OmegaConf.merge(OmegaConf.structured(schema), node)
    except (ConfigKeyError, ValidationError) as err:
        key = getattr(err, "full_key", None) or "?"
        msg = str(err).splitlines()[0]
        raise ConfigError(f"config key {path}.{key}: {msg} {_WHERE}") from None


def _signature_args(fn) -> list[str]:
    params = inspect.signature(fn).parameters
    return [p for p, v in params.items() if p != "self" and v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)]


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` (one line: the key, where it may come from, the valid keys) on the first unknown
    or mistyped key of a run config; returns None when the config is clean."""
    from fastformer.mixers import MIXERS, causal_mixers, mixer_kwargs
    from fastformer.models.encoder import Encoder

    _unknown("<root>", [k for k in cfg.keys()], TOP_LEVEL)
    task_name = cfg.task.get("name")
    if task_name not in TASK_SCHEMAS:
        raise ConfigError(f"task.name={task_name!r} has no schema; known tasks: {sorted(TASK_SCHEMAS)} "
                          "(fastformer/config_schema.py)")
    task_s, data_s, model_s = TASK_SCHEMAS[task_name]
    c = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("trainer", "logger", "paths", "task", "data",
                                                                  "model", "optimizer") if k in cfg}
    _check("trainer", c.get("trainer", {}), TrainerSchema)
    _check("logger", c.get("logger", {}), LoggerSchema)
    _check("paths", c.get("paths", {}), PathsSchema)
    _check("task", c["task"], task_s)
    _check("data", c["data"], data_s)
    _check("model", c["model"], model_s)
    mixer = dict(c["model"].get("mixer") or {})
    name = mixer.pop("name", None)
    if name not in MIXERS:
        raise ConfigError(f"model.mixer.name={name!r} is not a registered mixer; registered: {sorted(MIXERS)}")
    if mixer.get("causal") and name not in causal_mixers():  # e.g. experiment=probe_causal/<a mixer without one>
        raise ConfigError(f"model.mixer.causal=true but mixer {name!r} has no causal form; mixers with one: "
                          f"{causal_mixers()}")
    _unknown("model.mixer", mixer, mixer_kwargs(name))
    dec = dict(c["model"].get("decoder_mixer") or {})
    if dec:
        dname = dec.pop("name", None)
        if dname not in causal_mixers():
            raise ConfigError(f"model.decoder_mixer.name={dname!r} is not a mixer with a causal form; "
                              f"mixers with one: {causal_mixers()}")
        _unknown("model.decoder_mixer", dec, set(mixer_kwargs(dname)) - {"causal"} | {"name"})
    enc_valid = set(_signature_args(Encoder.__init__)) - _ENCODER_FROM_TASK
    _unknown("model.encoder", c["model"].get("encoder") or {}, enc_valid)
    opt = c.get("optimizer") or {}
    target = opt.get("_target_")
    if not target:
        raise ConfigError("optimizer._target_ is missing (configs/optimizer/*.yaml)")
    module, _, attr = str(target).rpartition(".")
    try:
        opt_cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"optimizer._target_={target!r} cannot be imported") from None
    _unknown("optimizer", opt, {"_target_", "_partial_", *(_signature_args(opt_cls.__init__)[1:])})
    _check_optimizer_values(opt, opt_cls)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_optimizer_values(opt: dict, opt_cls) -> None:
    """Each ``optimizer.<arg>`` against the type of the optimizer's own default for it (a float default takes a number,
    a bool a bool, a tuple a list of numbers of its length); learning rate and weight decay must be >= 0. Before any
    data is read: ``optimizer.lr=fast`` stops here, not with a TypeError after the data has loaded."""
    import math
    defaults = {k: v.default for k, v in inspect.signature(opt_cls.__init__).parameters.items()}
    where = f"(configs/optimizer/*.yaml, or the command line; {opt_cls.__name__} takes it)"
    for key, value in opt.items():
        if key in ("_target_", "_partial_") or value is None:
            continue
        default = defaults.get(key, inspect.Parameter.empty)
        if default is inspect.Parameter.empty or default is None:
            continue
        want, ok = None, True
        if isinstance(default, bool):
            want, ok = "true or false", isinstance(value, bool)
        elif _is_number(default):
            want, ok = "a number", _is_number(value) and math.isfinite(value)
        elif isinstance(default, tuple) and all(_is_number(x) for x in default):
            want = f"a list of {len(default)} numbers, e.g. {list(default)}"
            ok = isinstance(value, (list, tuple)) and len(value) == len(default) and all(map(_is_number, value))
        if not ok:
            raise ConfigError(f"config key optimizer.{key}={value!r} must be {want} {where}")
        if key in ("lr", "weight_decay") and value < 0:
            raise ConfigError(f"config key optimizer.{key}={value!r} must be >= 0 {where}")
