"""Hugging Face models over the repo's modules: ``FastformerModel`` (token embedding -> ``Encoder``) and
``FastformerForSequenceClassification`` (+ the ``ClassificationHead``: attention pooling -> linear).

They hold exactly the modules of ``fastformer.models.classifier.TextClassifier``, so a run's ``best.pt`` maps on by a
prefix (:func:`from_text_classifier_state_dict`: ``embed.*``/``encoder.*`` -> ``fastformer.embed.*``/
``fastformer.encoder.*``, ``head.*`` unchanged) and gives the run's logits exactly.

Masks: ``attention_mask`` is the Hugging Face one, 1 (or True) for a real token and 0 for padding, any integer, float
or bool dtype; ``None`` means every token is real. Outputs at real positions never depend on what sits at padded
positions (the mixer contract, fastformer/mixers/base.py).

Weights: the modules initialise themselves when built (as in training); Hugging Face's initialisation touches only
weights that a checkpoint did not provide (e.g. a new classification head on a ``FastformerModel`` checkpoint).
Fastformer's layer-wise sharing (``sharing="qv+layer"``, or ``share_layers``) hands one mixer to every layer: the
aliases are declared as tied weights, so a checkpoint stores the shared mixer once and reloads it shared.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput

from fastformer.hf.configuration import FastformerConfig
from fastformer.models.encoder import Encoder
from fastformer.models.heads import ClassificationHead, token_embedding


def _bool_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if attention_mask is None else attention_mask.to(torch.bool)


class FastformerPreTrainedModel(PreTrainedModel):
    config_class = FastformerConfig
    base_model_prefix = "fastformer"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False

    def _mark_built(self) -> None:
        """Flag every parameter and buffer as initialised: the modules initialised themselves when built, so
        ``post_init`` keeps their initialisation; a checkpoint's missing weights come in as new tensors, unflagged."""
        for t in (*self.parameters(), *self.buffers()):
            t._is_hf_initialized = True

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise the parameters of ``module`` that are not flagged (missing from a checkpoint): linear and
        embedding weights N(0, 0.02) (embedding padding row 0), biases 0, norms 1/0, other tensors N(0, 0.02)."""
        std = 0.02
        with torch.no_grad():
            for name, p in module.named_parameters(recurse=False):
                if getattr(p, "_is_hf_initialized", False):
                    continue
                if isinstance(module, nn.LayerNorm):
                    p.fill_(1.0 if name == "weight" else 0.0)
                elif name == "bias":
                    p.zero_()
                else:
                    p.normal_(0.0, std)
                    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                        p[module.padding_idx].zero_()

    @classmethod
    def get_init_context(cls, *args, **kwargs):
        """Build on the CPU, not on the meta device: some mixers compute from their buffers when built (Performer
        draws its projection from its seed buffer), and a real build also gives real values to what no checkpoint
        holds."""
        return [c for c in super().get_init_context(*args, **kwargs)
                if not (isinstance(c, torch.device) and c.type == "meta")
                and type(c).__name__ != "meta_device_safe_creation_ops"]

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict:
        """``{alias: first name}`` of every parameter / buffer reachable under several names (a shared mixer)."""
        if all_submodels:
            return super().get_expanded_tied_weights_keys(all_submodels=True)
        first, aliases = {}, {}
        for name, t in [*self.named_parameters(remove_duplicate=False), *self.named_buffers(remove_duplicate=False)]:
            if id(t) in first:
                aliases[name] = first[id(t)]
            else:
                first[id(t)] = name
        return aliases

    def _declare_shared(self) -> None:
        # save_pretrained drops the names matched by these patterns (exact names) and keeps the first one
        self._tied_weights_keys = {k.replace(".", "[.]") + "$": v
                                   for k, v in self.get_expanded_tied_weights_keys().items()} or None


class FastformerModel(FastformerPreTrainedModel):
    """``input_ids (B, N)`` [+ ``attention_mask (B, N)``] -> ``last_hidden_state (B, N, hidden_size)``."""

    def __init__(self, config: FastformerConfig):
        super().__init__(config)
        self.embed = token_embedding(config.vocab_size, config.hidden_size)
        self.encoder = Encoder(**config.encoder_kwargs())
        self._mark_built()
        self._declare_shared()
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed = value

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs) -> BaseModelOutput | tuple:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("FastformerModel: give exactly one of input_ids and inputs_embeds")
        mask = _bool_mask(attention_mask)
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # (B, N, D)
        output_hidden_states = (output_hidden_states if output_hidden_states is not None
                                else self.config.output_hidden_states)
        x = self.encoder.stem(x, mask)
        hidden = [x] if output_hidden_states else None
        for layer in self.encoder.layers:
            x = layer(x, mask)
            if hidden is not None:
                hidden.append(x)
        x = self.encoder.out_norm(x)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return (x, tuple(hidden)) if hidden is not None else (x,)
        return BaseModelOutput(last_hidden_state=x, hidden_states=tuple(hidden) if hidden is not None else None)


class FastformerForSequenceClassification(FastformerPreTrainedModel):
    """``FastformerModel`` -> attention pooling over real tokens -> linear: the repo's ``TextClassifier``.

    ``labels``: class ids (cross-entropy), floats with ``num_labels == 1`` (MSE), or multi-hot floats with
    ``problem_type="multi_label_classification"`` (BCE), as for other Hugging Face classifiers."""

    def __init__(self, config: FastformerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.fastformer = FastformerModel(config)
        self.head = ClassificationHead(config.hidden_size, config.num_labels, dropout=config.classifier_dropout)
        self._mark_built()
        self._declare_shared()
        self.post_init()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None,
                **kwargs) -> SequenceClassifierOutput | tuple:
        out = self.fastformer(input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                              output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.head(out.last_hidden_state, _bool_mask(attention_mask))  # (B, C)
        loss = None if labels is None else self._loss(logits, labels)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            rest = (logits,) + ((out.hidden_states,) if out.hidden_states is not None else ())
            return ((loss,) + rest) if loss is not None else rest
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.problem_type is None:
            cfg.problem_type = ("regression" if self.num_labels == 1 else "single_label_classification"
                                if labels.dtype in (torch.long, torch.int) else "multi_label_classification")
        if cfg.problem_type == "regression":
            return nn.functional.mse_loss(logits.squeeze(-1).float(), labels.squeeze(-1).float())
        if cfg.problem_type == "single_label_classification":
            return nn.functional.cross_entropy(logits.float(), labels.view(-1))
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())


def from_text_classifier_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``TextClassifier`` state dict (a run's ``checkpoints/best.pt["model"]``) -> the state dict of the
    ``FastformerForSequenceClassification`` of the same sizes."""
    out = {}
    for k, v in state_dict.items():
        if k.startswith(("embed.", "encoder.")):
            out["fastformer." + k] = v
        elif k.startswith("head."):
            out[k] = v
        else:
            raise KeyError(f"unexpected TextClassifier state dict key {k!r} (expected embed.*, encoder.*, head.*)")
    return out


OFFICIAL_LAYER_KEYS = ("query.weight", "query.bias", "key.weight", "key.bias", "query_att.weight", "query_att.bias",
                       "key_att.weight", "key_att.bias", "transform.weight", "transform.bias")


def load_official_layer(model: FastformerModel | FastformerForSequenceClassification,
                        state_dict: Mapping[str, torch.Tensor], layer: int | None = None) -> list[int]:
    """Load the released ``FastSelfAttention`` (wuch15/Fastformer) weights into the mixers of a model whose config has
    ``mixer="fastformer"`` with ``mixer_kwargs={"variant": "official", ...}``; returns the layers loaded.

    ``state_dict``: one layer's (keys ``query.weight``, ..., ``transform.bias``: loaded into layer ``layer``, or into
    every layer when ``layer`` is None), or a whole released encoder's / model's, whose per-layer keys end in
    ``encoders.<i>.attention.self.<name>`` (each into its layer; ``layer`` is then ignored). Strict: every key of a
    mixer must be present. The rest of a released model (BERT-style output dense, embeddings) has no place in this
    encoder (README "Decisions": the repo's block has no extra output dense)."""
    base = model.fastformer if isinstance(model, FastformerForSequenceClassification) else model
    cfg = base.config
    if cfg.mixer != "fastformer" or cfg.mixer_kwargs.get("variant") != "official":
        raise ValueError(f"load_official_layer needs a config with mixer='fastformer' and mixer_kwargs="
                         f"{{'variant': 'official', ...}} (got mixer={cfg.mixer!r}, mixer_kwargs={cfg.mixer_kwargs!r})")
    layers = base.encoder.layers
    per_layer: dict[int, dict[str, torch.Tensor]] = {}
    if set(state_dict) == set(OFFICIAL_LAYER_KEYS):
        for i in (range(len(layers)) if layer is None else [layer]):
            per_layer[i] = dict(state_dict)
    else:
        import re
        pat = re.compile(r"(?:^|\.)encoders\.(\d+)\.attention\.self\.(.+)$")
        for k, v in state_dict.items():
            m = pat.search(k)
            if m:
                per_layer.setdefault(int(m.group(1)), {})[m.group(2)] = v
        if not per_layer:
            raise KeyError(f"no released FastSelfAttention keys in the state dict: expected {OFFICIAL_LAYER_KEYS} or "
                           "'...encoders.<i>.attention.self.<name>'")
    bad = sorted(i for i in per_layer if not 0 <= i < len(layers))
    if bad:
        raise ValueError(f"state dict has layers {bad}; the model has {len(layers)} (config.num_hidden_layers)")
    distinct = {id(v) for sd in per_layer.values() for v in sd.values()}
    if base.encoder.shared and len(distinct) > len(OFFICIAL_LAYER_KEYS):
        raise ValueError("the model shares one mixer across layers (sharing='qv+layer' or share_layers) but the state "
                         "dict holds different layers: use mixer_kwargs={'variant': 'official', 'sharing': 'qv'}")
    for i, sd in sorted(per_layer.items()):
        layers[i].mixer.load_state_dict(sd, strict=True)
    return sorted(per_layer)
