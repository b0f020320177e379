"""``FastformerConfig``: the repo's classifier (token embedding -> Encoder(any mixer) -> attention pooling) as a
Hugging Face config. The mixer is a field: ``mixer`` names any registered mixer (``fastformer.mixers.MIXERS``) and
``mixer_kwargs`` holds its options, so e.g. the released Fastformer layer is
``FastformerConfig(mixer_kwargs={"variant": "official", "sharing": "qv"})`` and a Transformer baseline is
``FastformerConfig(mixer="transformer")``. The encoder switches keep the repo's names (configs/model/classifier.yaml);
sizes use the usual Hugging Face names (``hidden_size`` = d_model, ``num_attention_heads``, ``num_hidden_layers``,
``intermediate_size`` = d_ff, ``max_position_embeddings`` = max_len, ``hidden_dropout_prob`` = dropout).
"""
from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

#: encoder switches of ``fastformer.models.encoder.Encoder`` stored under their own names
ENCODER_SWITCHES = ("use_ffn", "residual", "norm", "norm_position", "pos_emb", "input_norm", "final_norm",
                    "share_layers", "token_shift", "ffn_dropout")


class FastformerConfig(PretrainedConfig):
    model_type = "fastformer"

    def __init__(self, vocab_size: int = 30000, hidden_size: int = 256, num_attention_heads: int = 16,
                 num_hidden_layers: int = 2, intermediate_size: int = 256, max_position_embeddings: int = 512,
                 hidden_dropout_prob: float = 0.2, layer_norm_eps: float = 1e-12, mixer: str = "fastformer",
                 mixer_kwargs: dict[str, Any] | None = None, use_ffn: bool = True, residual: bool = True,
                 norm: str = "layer", norm_position: str = "post", pos_emb: str = "learned", input_norm: bool = True,
                 final_norm: bool = False, share_layers: bool = False, token_shift: bool = False,
                 ffn_dropout: bool = True, classifier_dropout: float = 0.0, pad_token_id: int = 0, **kwargs):
        from fastformer.mixers import MIXERS, mixer_kwargs as valid_kwargs

        if mixer not in MIXERS:
            raise ValueError(f"FastformerConfig: unknown mixer {mixer!r}; registered mixers: "
                             f"{', '.join(sorted(MIXERS))}")
        mixer_kwargs = dict(mixer_kwargs or {})
        bad = sorted(set(mixer_kwargs) - set(valid_kwargs(mixer)))
        if bad:
            raise ValueError(f"FastformerConfig: mixer {mixer!r} has no option(s) {bad}; valid: {valid_kwargs(mixer)}")
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.num_attention_heads, self.num_hidden_layers = num_attention_heads, num_hidden_layers
        self.intermediate_size, self.max_position_embeddings = intermediate_size, max_position_embeddings
        self.hidden_dropout_prob, self.layer_norm_eps = hidden_dropout_prob, layer_norm_eps
        self.mixer, self.mixer_kwargs = mixer, mixer_kwargs
        self.use_ffn, self.residual, self.norm, self.norm_position = use_ffn, residual, norm, norm_position
        self.pos_emb, self.input_norm, self.final_norm = pos_emb, input_norm, final_norm
        self.share_layers, self.token_shift, self.ffn_dropout = share_layers, token_shift, ffn_dropout
        self.classifier_dropout = classifier_dropout
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    def encoder_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``fastformer.models.encoder.Encoder`` for this config."""
        return {"d_model": self.hidden_size, "n_heads": self.num_attention_heads, "n_layers": self.num_hidden_layers,
                "mixer": self.mixer, "mixer_kwargs": dict(self.mixer_kwargs), "d_ff": self.intermediate_size,
                "dropout": self.hidden_dropout_prob, "norm_eps": self.layer_norm_eps,
                "max_len": self.max_position_embeddings, **{k: getattr(self, k) for k in ENCODER_SWITCHES}}

    @classmethod
    def from_run_config(cls, model_cfg: dict[str, Any], *, vocab_size: int, max_len: int,
                        **kwargs) -> FastformerConfig:
        """From a run's resolved ``model`` config node (as a dict: ``d_model``, ``n_heads``, ``dropout``, ``mixer``
        with ``name``, ``encoder``), the sizes ``TextClassifier`` was built with (vocabulary, ``data.max_len``)."""
        mixer = dict(model_cfg["mixer"])
        name = mixer.pop("name")
        enc = dict(model_cfg.get("encoder") or {})
        unknown = sorted(set(enc) - {"n_layers", "d_ff", "norm_eps", *ENCODER_SWITCHES})
        if unknown:
            raise ValueError(f"model.encoder option(s) {unknown} have no FastformerConfig field")
        return cls(vocab_size=vocab_size, hidden_size=int(model_cfg["d_model"]),
                   num_attention_heads=int(model_cfg["n_heads"]), num_hidden_layers=int(enc.pop("n_layers", 2)),
                   intermediate_size=int(enc.pop("d_ff", 256)), max_position_embeddings=max_len,
                   hidden_dropout_prob=float(model_cfg.get("dropout", 0.2)),
                   layer_norm_eps=float(enc.pop("norm_eps", 1e-12)), mixer=name, mixer_kwargs=mixer,
                   **{k: enc.pop(k) for k in ENCODER_SWITCHES if k in enc}, **kwargs)
