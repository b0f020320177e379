"""Loader options: one dataclass per data loader, read by the loader and by fastformer/config_schema.py (one
definition).

:func:`options_from_cfg` turns a ``data`` config node into a loader's options dataclass (unknown keys and missing
required keys stop with one line); the newsrec, summarization and probe loaders keep their dataclasses in their own
modules (``MindRecOptions``, ``SummarizationOptions``, ``ProbeOptions``), the classification one is here.

The classification ``data`` config schema, shared by :mod:`fastformer.data.classification` (splits, caches) and
:mod:`fastformer.data.classification_sources` (which files, which rows).

It lives in its own module so that neither of those two imports the other for it: ``classification`` imports
``classification_sources``, and both import this. ``DataOptions`` stays importable as
``fastformer.data.classification.DataOptions``.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from fastformer.errors import UserInputError

#: options whose value at this default leaves every cache key and config hash as it was before the option existed
#: (runs and caches made before it existed stay valid); see :func:`drop_defaults`
NEUTRAL_DEFAULTS = {"encoding": "utf-8", "max_skip_fraction": 0.01}
#: options that never change what a run computes (where a download comes from)
PROVENANCE_KEYS = ("urls",)


def drop_defaults(data: dict) -> dict:
    """``data`` without the keys of :data:`NEUTRAL_DEFAULTS` that are at their default and without
    :data:`PROVENANCE_KEYS`: what hashes a run or a cache (so adding those options changed no existing hash)."""
    return {k: v for k, v in data.items()
            if k not in PROVENANCE_KEYS and not (k in NEUTRAL_DEFAULTS and v == NEUTRAL_DEFAULTS[k])}


def options_from_cfg(cls, cfg: Any, *, required: tuple[str, ...] = ("name",), example: str = "imdb"):
    """``cls(**cfg)`` for a loader's options dataclass: a DictConfig or dict ``data`` node; an unknown key or a missing
    required one raises :class:`UserInputError` naming the key and the valid ones."""
    if not isinstance(cfg, dict):
        from omegaconf import OmegaConf
        cfg = OmegaConf.to_container(cfg, resolve=True)
    known = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(cfg) - known)
    if bad:
        raise UserInputError(f"unknown config key data.{bad[0]}; valid keys under data ({cls.__name__}): "
                             f"{', '.join(sorted(known))}")
    for key in required:
        if cfg.get(key) is None:
            raise UserInputError(f"data.{key} is required (e.g. data.{key}={example})")
    return cls(**{k: v for k, v in cfg.items() if k != "root" or v is not None})


@dataclass(kw_only=True)
class DataOptions:
    """The ``data`` config node; see configs/data/*.yaml for one-line docs of each key."""
    name: str
    loader: str                                 # amazon | imdb | mind_topics | text
    root: str = dataclasses.field(default_factory=lambda: os.environ.get("DATA_ROOT", "data"))
    path: str | None = None                     # file/folder relative to root; None = loader's search defaults
    download: bool = True
    split_sizes: list[int] = dataclasses.field(default_factory=lambda: [40000, 5000, 5000])
    seed: int = 1234
    max_train: int | None = None
    max_eval: int | None = None
    max_len: int | None = None
    vocab_size: int | None = 100000
    min_freq: int = 1
    tokenizer: str = "regex"
    lowercase: bool = True
    glove_path: str | None = None
    glove_projection: str = "pca"
    cache_dir: str | None = None
    num_workers: int | None = None              # tokeniser processes; None = auto (up to 8 when > 20k texts)
    categories: list[str] | None = None         # amazon
    fallback_all_categories: bool = True        # amazon
    use_summary: bool = False                   # amazon
    label_mode: str = "rating8"                 # imdb: rating8 | binary
    format: str | None = None                   # imdb: aclimdb | diao_json; text: auto | jsonl | json | csv | tsv
    size: str = "large"                         # mind_topics download: small | large
    body_path: str | None = None                # mind_topics
    body_column: int | None = None              # mind_topics
    text_field: Any = None                      # text / diao_json: str or list of str
    label_field: str | None = None              # text / diao_json
    label_names: list[str] | None = None        # text: fixed label order (others -> unknown_label)
    encoding: str = "utf-8"                     # text encoding of the file(s), e.g. latin-1, cp1252, utf-16
    max_skip_fraction: float = 0.01             # stop when more than this share of the rows would be dropped as bad
    urls: dict[str, str] | None = None          # mind_topics: zip URL per archive (configs/data/mind_topics.yaml)

    @classmethod
    def from_cfg(cls, cfg: Any) -> DataOptions:
        return options_from_cfg(cls, cfg, required=("name", "loader"))
