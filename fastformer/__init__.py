"""fastformer-repro: reference reproduction of Fastformer (Wu et al. 2021, arXiv 2108.09084).

Library use (the core install needs torch and numpy only)::

    from fastformer import Encoder, build_mixer, MIXERS, TextClassifier
    from fastformer import FastformerConfig, FastformerModel, FastformerForSequenceClassification  # needs transformers

The names are imported on first access, so ``import fastformer`` itself stays free of torch (the data pipeline's
tokeniser worker processes import submodules only). Accessing a Hugging Face name imports :mod:`fastformer.hf`,
which registers ``model_type="fastformer"`` with ``AutoConfig`` / ``AutoModel`` /
``AutoModelForSequenceClassification``.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "MIXERS": "fastformer.mixers", "TokenMixer": "fastformer.mixers", "build_mixer": "fastformer.mixers",
    "mixer_kwargs": "fastformer.mixers", "register_mixer": "fastformer.mixers",
    "Encoder": "fastformer.models.encoder", "AttentionPooling": "fastformer.models.heads",
    "ClassificationHead": "fastformer.models.heads", "TextClassifier": "fastformer.models.classifier",
    "FastformerConfig": "fastformer.hf", "FastformerModel": "fastformer.hf",
    "FastformerForSequenceClassification": "fastformer.hf", "FastformerPreTrainedModel": "fastformer.hf",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fastformer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
