"""Hugging Face classes (fastformer/hf): every registered mixer (and the Fastformer switches) is one config value;
the Auto classes load them; save_pretrained -> from_pretrained gives identical outputs; 0/1 attention masks; the
model trains under transformers' Trainer; a TextClassifier state dict and the released FastSelfAttention weights
load; the exported word-level tokenizer gives the repo pipeline's tokens."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification  # noqa: E402

from fastformer.hf import (  # noqa: E402
    FastformerConfig,
    FastformerForSequenceClassification,
    FastformerModel,
    from_text_classifier_state_dict,
    load_official_layer,
)
from fastformer.mixers import MIXERS  # noqa: E402

SMALL = {  # small-scale options so that the local / sparse patterns are exercised at N=24 (tests/test_mixers.py)
    "longformer": dict(window=4, n_global=2),
    "bigbird": dict(block_size=4, n_global_blocks=1, n_random_blocks=1, window_blocks=3),
    "linformer": dict(proj_len=8),
    "poolingformer": dict(window=8, pool_window=16, pool_size=4),
    "performer": dict(n_features=16),
}
FASTFORMER_SWITCHES = [dict(variant="official", sharing="qv"), dict(sharing="none"), dict(interaction="concat"),
                       dict(pooling="mean"), dict(key_branch=False)]
CASES = [(name, SMALL.get(name, {})) for name in sorted(MIXERS)] + [("fastformer", kw) for kw in FASTFORMER_SWITCHES]
V, N = 40, 24


def config(mixer: str = "fastformer", mixer_kwargs: dict | None = None, **kw) -> FastformerConfig:
    return FastformerConfig(**{"vocab_size": V, "hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 2,
                               "intermediate_size": 32, "max_position_embeddings": 32, "num_labels": 3,
                               "mixer": mixer, "mixer_kwargs": mixer_kwargs or {}, **kw})


def batch(B: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, V, (B, N), generator=g)
    lengths = torch.tensor([N, N - 5, 7][:B])
    mask = (torch.arange(N)[None] < lengths[:, None]).long()  # Hugging Face mask: 1 real, 0 padding
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("mixer,kw", CASES, ids=[f"{n}-{','.join(f'{k}={v}' for k, v in kw.items())}"
                                                 for n, kw in CASES])
def test_every_mixer_roundtrips_through_the_auto_classes(tmp_path, mixer, kw):
    torch.manual_seed(0)
    model = FastformerForSequenceClassification(config(mixer, kw)).eval()
    ids, mask = batch()
    logits = model(ids, attention_mask=mask).logits
    assert logits.shape == (3, 3) and torch.isfinite(logits).all()
    model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is FastformerConfig
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(again) is FastformerForSequenceClassification and again.config.mixer_kwargs == kw
    torch.testing.assert_close(again(ids, attention_mask=mask).logits, logits, rtol=0, atol=0)
    base = AutoModel.from_pretrained(tmp_path).eval()  # the encoder alone, from the classifier's folder
    assert type(base) is FastformerModel
    torch.testing.assert_close(base(ids, attention_mask=mask).last_hidden_state,
                               model.fastformer(ids, attention_mask=mask).last_hidden_state, rtol=0, atol=0)


def test_ffn_dropout_switch_keeps_parameter_names_and_roundtrips(tmp_path):
    """``ffn_dropout=False`` (the released code's FFN: no dropout on the hidden activation) drops only that Dropout:
    the same parameter names, a checkpoint of either loads into the other, and the switch survives save/load."""
    from fastformer.models.encoder import FeedForward
    from fastformer.ops import Dropout

    on, off = (FastformerForSequenceClassification(config(ffn_dropout=v)) for v in (True, False))
    ffns = [m for m in off.modules() if isinstance(m, FeedForward)]
    assert ffns and not any(isinstance(m, Dropout) for f in ffns for m in f.modules())
    assert any(isinstance(m, Dropout) for f in on.modules() if isinstance(f, FeedForward) for m in f.modules())
    off.load_state_dict(on.state_dict())  # strict: identical names
    off.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).ffn_dropout is False
    assert off.config.encoder_kwargs()["ffn_dropout"] is False


def test_shared_mixer_is_saved_once_and_reloads_shared(tmp_path):
    from safetensors import safe_open

    model = FastformerForSequenceClassification(config(num_hidden_layers=3))  # sharing="qv+layer" (the default)
    layers = model.fastformer.encoder.layers
    assert layers[0].mixer is layers[2].mixer
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any(".layers.0.mixer." in k for k in keys) and not any(".layers.1.mixer." in k for k in keys)
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    la = again.fastformer.encoder.layers
    assert la[0].mixer is la[1].mixer is la[2].mixer
    torch.testing.assert_close(la[2].mixer.query.weight, layers[0].mixer.query.weight, rtol=0, atol=0)


def test_unknown_mixer_or_option_fails_in_the_config():
    with pytest.raises(ValueError, match="registered mixers"):
        config("nope")
    with pytest.raises(ValueError, match="has no option"):
        config("fastformer", {"windw": 3})


@pytest.mark.parametrize("mixer", ["fastformer", "transformer", "pooling_baseline"])
def test_attention_mask_zero_one(mixer):
    torch.manual_seed(0)
    model = FastformerForSequenceClassification(config(mixer)).eval()
    ids, mask = batch()
    ref = model(ids, attention_mask=mask).logits
    for m in (mask.bool(), mask.float(), mask.int()):  # any dtype of 0/1
        torch.testing.assert_close(model(ids, attention_mask=m).logits, ref, rtol=0, atol=0)
    junk = ids.masked_fill(mask == 0, 7)  # what sits at padded positions does not matter
    torch.testing.assert_close(model(junk, attention_mask=mask).logits, ref, rtol=1e-5, atol=1e-5)
    for row in range(3):  # a padded row = the same text alone, unpadded
        n = int(mask[row].sum())
        alone = model(ids[row:row + 1, :n]).logits  # no mask: every token real
        torch.testing.assert_close(alone, ref[row:row + 1], rtol=1e-4, atol=1e-5)


def test_labels_give_the_loss():
    model = FastformerForSequenceClassification(config())
    ids, mask = batch()
    out = model(ids, attention_mask=mask, labels=torch.tensor([0, 2, 1]))
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 2, 1])))
    out = model(ids, attention_mask=mask, output_hidden_states=True)
    assert len(out.hidden_states) == 3 and out.hidden_states[-1].shape == (3, N, 32)


def test_trains_with_the_hf_trainer(tmp_path):
    pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate (the hf extra)")
    from transformers import Trainer, TrainingArguments

    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(96):  # label = which of the tokens 2, 3, 4 the text holds
        n = int(torch.randint(4, 12, (), generator=g))
        ids = torch.randint(5, V, (n,), generator=g)
        label = i % 3
        ids[int(torch.randint(0, n, (), generator=g))] = 2 + label
        rows.append({"input_ids": ids.tolist(), "labels": label})

    def collate(items):
        width = max(len(r["input_ids"]) for r in items)
        ids = torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in items])
        return {"input_ids": ids, "attention_mask": (ids != 0).long(),
                "labels": torch.tensor([r["labels"] for r in items])}

    torch.manual_seed(0)
    model = FastformerForSequenceClassification(config(hidden_dropout_prob=0.0))
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=16, num_train_epochs=10,
                             learning_rate=3e-3, logging_steps=6, save_strategy="no", report_to=[], use_cpu=True,
                             seed=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < 0.5 * losses[0], losses
    model.eval()
    b = collate(rows)
    acc = (model(b["input_ids"], attention_mask=b["attention_mask"]).logits.argmax(-1) == b["labels"]).float().mean()
    assert acc > 0.9


def test_text_classifier_state_dict_maps_exactly():
    from fastformer.models.classifier import TextClassifier

    torch.manual_seed(0)
    kw = dict(sharing="qv+layer")
    clf = TextClassifier(vocab_size=V, n_classes=3, d_model=32, n_heads=4, max_len=32, mixer="fastformer",
                         mixer_kwargs=kw, encoder={"n_layers": 2, "d_ff": 32}).eval()
    model = FastformerForSequenceClassification(config("fastformer", kw)).eval()
    model.load_state_dict(from_text_classifier_state_dict(clf.state_dict()), strict=True)
    ids, mask = batch()
    torch.testing.assert_close(model(ids, attention_mask=mask).logits, clf(ids, mask.bool()), rtol=0, atol=0)


def test_released_layer_weights_load_into_the_hf_model(tmp_path):
    from fastformer.mixers.naive.fastformer import OfficialFastSelfAttention

    torch.manual_seed(3)
    released = [OfficialFastSelfAttention(32, 4) for _ in range(2)]
    for layer in released:
        for p in layer.parameters():
            torch.nn.init.normal_(p, 0, 0.3)
    cfg = config("fastformer", {"variant": "official", "sharing": "qv"})
    # a whole released encoder's state dict: each layer's FastSelfAttention into its layer
    full = {f"fastformer_model.encoders.{i}.attention.self.{k}": v
            for i, layer in enumerate(released) for k, v in layer.state_dict().items()}
    full["fastformer_model.encoders.0.attention.output.dense.weight"] = torch.zeros(32, 32)  # no place here: ignored
    model = FastformerForSequenceClassification(cfg).eval()
    assert load_official_layer(model, full) == [0, 1]
    x = torch.randn(2, 9, 32)
    real = torch.ones(2, 9)
    real[1, 6:] = 0
    for i, layer in enumerate(released):
        ours = model.fastformer.encoder.layers[i].mixer
        torch.testing.assert_close(ours(x, real.bool())[real.bool()], layer(x, real)[real.bool()],
                                   rtol=1e-5, atol=1e-5)
    model.save_pretrained(tmp_path)  # and it is an ordinary Hugging Face checkpoint from then on
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    torch.testing.assert_close(again.fastformer.encoder.layers[1].mixer.transform.weight,
                               released[1].transform.weight, rtol=0, atol=0)
    # one layer's state dict into every layer of a model sharing one mixer
    shared = FastformerModel(config("fastformer", {"variant": "official", "sharing": "qv+layer"}))
    assert load_official_layer(shared, released[0].state_dict()) == [0, 1]
    with pytest.raises(ValueError, match="shares one mixer"):
        load_official_layer(shared, full)
    with pytest.raises(ValueError, match="variant"):
        load_official_layer(FastformerModel(config()), released[0].state_dict())


TRICKY = ["Don't stop -- it's the U.S. e-mail 3.5 ... ``quoted'' \u2019s CAN'T",
          "na\u00efve cafe\u0301 \u00b2 \u00bd \u216b", "\u0130stanbul STRASSE \u01c5",
          "\u039f\u0394\u039f\u03a3 \u03a3\u0391\u03a3. \u03a3\u0345\u0627 Y\u03a3\u0345.",
          "tabs\tand\u00a0nbsp\u2028line\x1cseparators\x85", "emoji \U0001f600! snake_case \u65e5\u672c\u8a9e ''",
          "", "   ", "!!!???...", "won't isn't 'tis o'clock rock'n'roll"]


@pytest.mark.parametrize("name", ["regex", "wordpunct"])
def test_tokenizer_gives_the_repo_tokens_and_ids(tmp_path, name):
    from transformers import AutoTokenizer

    from fastformer.data.fixtures import _sentence
    from fastformer.data.text import Vocab, get_tokenizer, tokenize_all
    from fastformer.hf.tokenization import build_tokenizer

    if name == "regex":
        repo = get_tokenizer("regex")
    else:
        import re
        repo = lambda t: re.findall(r"\w+|[^\w\s]+", t.lower())  # noqa: E731  (NLTK's wordpunct_tokenize)
    import numpy as np
    rng = np.random.default_rng(0)
    texts = TRICKY + [_sentence(rng, "Great movie, really loved it!") for _ in range(50)]
    tokens = tokenize_all(texts, repo)
    vocab = Vocab.build(tokens[::2])  # words of half the texts: the rest meets <unk>
    build_tokenizer(vocab.itos, tokenizer=name, max_len=16).save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    backend = tok.backend_tokenizer
    for text, want in zip(texts, tokens):
        pieces = [p for p, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text))]
        assert pieces == want, text
        assert tok(text)["input_ids"] == vocab.encode(want), text
        assert tok(text, truncation=True)["input_ids"] == vocab.encode(want)[:16]  # the dataset's truncation
    enc = tok(texts[:3], padding=True, return_tensors="pt")
    assert enc["input_ids"][enc["attention_mask"] == 0].eq(0).all()  # <pad> = 0, as the models expect


def test_treebank_has_no_exact_export():
    from fastformer.hf.tokenization import build_backend

    with pytest.raises(ValueError, match="no exact"):
        build_backend(["<pad>", "<unk>"], tokenizer="treebank")
