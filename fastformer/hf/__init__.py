"""Hugging Face classes for every mixer (needs the ``hf`` extra: ``pip install ".[hf]"``).

Importing this module registers ``model_type="fastformer"`` with ``AutoConfig``, ``AutoModel`` and
``AutoModelForSequenceClassification``::

    import fastformer.hf  # noqa: F401  (registers the Auto classes)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    tok = AutoTokenizer.from_pretrained("exported_run")          # scripts/export_hf.py <run dir> exported_run
    model = AutoModelForSequenceClassification.from_pretrained("exported_run")
    logits = model(**tok(["a gripping , well acted film"], return_tensors="pt", padding=True)).logits
"""
from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from fastformer.hf.configuration import FastformerConfig
from fastformer.hf.modeling import (
    FastformerForSequenceClassification,
    FastformerModel,
    FastformerPreTrainedModel,
    from_text_classifier_state_dict,
    load_official_layer,
)

AutoConfig.register("fastformer", FastformerConfig, exist_ok=True)
AutoModel.register(FastformerConfig, FastformerModel, exist_ok=True)
AutoModelForSequenceClassification.register(FastformerConfig, FastformerForSequenceClassification, exist_ok=True)

__all__ = ["FastformerConfig", "FastformerModel", "FastformerForSequenceClassification", "FastformerPreTrainedModel",
           "from_text_classifier_state_dict", "load_official_layer"]
