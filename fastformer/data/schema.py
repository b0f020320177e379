"""The classification ``data`` config schema, shared by :mod:`fastformer.data.classification` (splits, caches) and
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
    variant: str = "large"                      # mind_topics download: small | large
    body_path: str | None = None                # mind_topics
    body_column: int | None = None              # mind_topics
    text_field: Any = None                      # text / diao_json: str or list of str
    label_field: str | None = None              # text / diao_json
    label_names: list[str] | None = None        # text: fixed label order (others -> unknown_label)

    @classmethod
    def from_cfg(cls, cfg: Any) -> DataOptions:
        if not isinstance(cfg, dict):
            from omegaconf import OmegaConf
            cfg = OmegaConf.to_container(cfg, resolve=True)
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(cfg) - known)
        if bad:
            raise ValueError(f"unknown data config key(s) {bad}; known keys: {sorted(known)}")
        for key in ("name", "loader"):
            if cfg.get(key) is None:
                raise ValueError(f"data.{key} is required (e.g. data.{key}=imdb)")
        return cls(**{k: v for k, v in cfg.items() if k != "root" or v is not None})
