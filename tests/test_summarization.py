"""Summarization (issue 5): loaders in every layout, subword vocab, ROUGE wiring + lead-3, decoder incremental state,
beam search == exhaustive search, one training step per mixer, end-to-end task run on fixture data."""
from __future__ import annotations

import gzip
import itertools
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from fastformer.data.subword import BOS, EOS, PAD, cached_bpe
from fastformer.data.summarization import load_summarization, read_file, seeded_split, split_sentences
from fastformer.metrics.rouge import lead_baseline, lead_k, rouge
from fastformer.mixers import MIXERS
from fastformer.models.generate import beam_search, greedy_search
from fastformer.models.seq2seq import Seq2Seq

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
WORDS = "the cat sat on a mat while dogs ran in parks and birds sang over green hills near rivers".split()


def _doc(i: int, n: int = 40) -> tuple[str, str]:
    words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(n)]
    sents = [" ".join(words[k:k + 8]).capitalize() + "." for k in range(0, n, 8)]
    return " ".join(sents), "\n".join(sents[:2])


def write_fixture(folder: Path, layout: str, fmt: str, n: int, name: str = "train") -> Path:
    rows = []
    for i in range(n):
        art, summ = _doc(i)
        if layout == "cnndm":
            rows.append({"article": art, "highlights": summ, "id": f"c{i}"})
        elif layout == "ccdv":
            rows.append({"article": art, "abstract": summ.replace("\n", " "), "article_id": f"p{i}"})
        else:  # Cohan et al. original
            rows.append({"article_id": f"PMC{i}", "article_text": split_sentences(art),
                         "abstract_text": [f"<S> {s} </S>" for s in summ.split("\n")], "labels": None,
                         "section_names": ["intro"], "sections": [split_sentences(art)]})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.{fmt}"
    if fmt.startswith("csv"):
        pd.DataFrame(rows).to_csv(path, index=False)
    elif fmt == "parquet":
        pd.DataFrame(rows).to_parquet(path)
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    else:
        opener = gzip.open if fmt.endswith(".gz") else open
        with opener(path, "wt", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


@pytest.mark.parametrize("layout,fmt", [("cnndm", "csv.gz"), ("cnndm", "parquet"), ("ccdv", "jsonl"),
                                        ("ccdv", "json"), ("cohan", "jsonl.gz")])
def test_read_file_layouts(tmp_path, layout, fmt):
    exs = read_file(write_fixture(tmp_path, layout, fmt, 5))
    assert len(exs) == 5
    art, summ = _doc(3)
    assert exs[3].target == summ  # one sentence per line, Cohan <S> tags removed
    assert exs[3].source.split() == art.split()
    assert "<S>" not in exs[3].target


def test_discovery_and_seeded_split(tmp_path):
    folder = tmp_path / "cnn_dailymail"
    write_fixture(folder, "cnndm", "csv", 30, name="validation_sample")
    a, info = load_summarization(root=tmp_path, subdir="cnn_dailymail", split_seed=1)
    b, _ = load_summarization(root=tmp_path, subdir="cnn_dailymail", split_seed=1)
    c, _ = load_summarization(root=tmp_path, subdir="cnn_dailymail", split_seed=2)
    assert [len(a[s]) for s in ("train", "validation", "test")] == [24, 3, 3]
    assert a == b and a["test"] != c["test"] and "seeded split" in info["files"]
    ids = [e.id for s in a.values() for e in s]
    assert len(set(ids)) == 30  # disjoint, complete
    for p in ("train.jsonl", "val.jsonl", "test.jsonl"):
        write_fixture(tmp_path / "pubmed", "ccdv", "jsonl", 6, name=p.split(".")[0])
    named, info = load_summarization(root=tmp_path, subdir="pubmed", limit={"train": 4})
    assert [len(named[s]) for s in ("train", "validation", "test")] == [4, 6, 6]
    assert "train=train.jsonl" in info["files"]


def test_missing_and_ambiguous_data_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="ccdv/pubmed-summarization"):
        load_summarization(root=tmp_path, subdir="pubmed")
    write_fixture(tmp_path / "pubmed", "ccdv", "jsonl", 5, name="a")
    write_fixture(tmp_path / "pubmed", "cohan", "jsonl", 5, name="b")
    with pytest.raises(ValueError, match="data.files"):
        load_summarization(root=tmp_path, subdir="pubmed")
    with pytest.raises(ValueError, match="fields"):
        (tmp_path / "x.jsonl").write_text(json.dumps({"text": "a"}) + "\n")
        read_file(tmp_path / "x.jsonl")
    with pytest.raises(ValueError, match="sum to"):
        seeded_split([], val_fraction=0.6, test_fraction=0.5, seed=0)


@pytest.mark.data
def test_real_samples_load():
    if not (SHARED / "cnn_dailymail").is_dir():
        pytest.skip("../shared/data not available")
    cohan = read_file(SHARED / "pubmed" / "cohan_format_sample.jsonl.gz")
    assert len(cohan) == 10 and all(e.target and "<S>" not in e.target for e in cohan)
    cnn, _ = load_summarization(root=SHARED, subdir="cnn_dailymail", limit={"train": 10})
    assert len(cnn["validation"]) == 100 and "\n" in cnn["test"][0].target


def test_subword_roundtrip_and_cache(tmp_path):
    texts = [t for i in range(40) for t in _doc(i)]
    vocab, path = cached_bpe(texts, vocab_size=300, cache_dir=tmp_path)
    again, path2 = cached_bpe(texts, vocab_size=300, cache_dir=tmp_path)
    assert path == path2 and Path(path).is_file() and len(vocab) <= 300
    text = "The cat sat.\nZebras (unseen) jump!"  # unseen word and newline survive: byte-level BPE, no OOV
    ids = vocab.encode(text)
    assert min(ids) > EOS and vocab.decode(ids + [EOS] + ids) == text
    assert again.encode(text) == ids


def test_rouge_hand_made_pairs():
    assert rouge(["the cat sat on the mat"], ["the cat sat on the mat"])["rouge1"] == pytest.approx(100.0)
    # ref 4 unigrams, pred 2 matching of 2: P=1, R=0.5 -> F1=2/3; bigram "cats sat" matches (stemming cats->cat)
    r = rouge(["cats sat"], ["the cat sat down"])
    assert r["rouge1"] == pytest.approx(200 / 3) and r["rouge2"] == pytest.approx(100 * 2 * 1 * (1 / 3) / (4 / 3))
    # Lsum uses sentence-level union LCS: swapped sentence order hurts rougeL but not rougeLsum
    ref, pred = "a b c. d e f.", "d e f. a b c."
    s = rouge([pred], [ref])
    assert s["rougeLsum"] == pytest.approx(100.0) and s["rougeL"] < 100.0
    assert rouge(["x y"], ["z w"])["rouge1"] == 0.0


def test_lead3():
    doc = "First one. Second one! Third one? Fourth one."
    assert lead_k(doc) == "First one.\nSecond one!\nThird one?"
    assert lead_baseline([doc], ["First one.\nSecond one!\nThird one?"])["rougeLsum"] == pytest.approx(100.0)


class FixedScoreModel(torch.nn.Module):
    """Decoder whose next-token logits are a fixed pseudo-random function of (source id, prefix)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.V = vocab

    def encode(self, src, src_mask):
        return src

    def init_state(self, memory, src_mask):
        return {"src": memory[:, 0], "prefix": torch.zeros(memory.shape[0], 0, dtype=torch.long)}

    def logits_for(self, src_id: int, prefix: tuple) -> torch.Tensor:
        g = torch.Generator().manual_seed(hash((src_id,) + prefix) % (2 ** 31))
        return torch.randn(self.V, generator=g) * 2.0

    def step(self, tokens, state):
        state["prefix"] = torch.cat([state["prefix"], tokens], dim=1)
        return torch.stack([self.logits_for(int(s), tuple(p.tolist())) for s, p in zip(state["src"], state["prefix"])])

    @staticmethod
    def reorder_state(state, index):
        return {k: v.index_select(0, index) for k, v in state.items()}


def exhaustive_best(model: FixedScoreModel, src_id: int, *, max_len: int, min_len: int, alpha: float):
    content = [t for t in range(model.V) if t not in (PAD, BOS, EOS)]  # pad/bos are never generated
    best = (-math.inf, None)
    for n in range(min_len, max_len):  # n content tokens, then eos
        for seq in itertools.product(content, repeat=n):
            lp, prefix = 0.0, (BOS,)
            for tok in seq + (EOS,):
                lp += torch.log_softmax(model.logits_for(src_id, prefix), -1)[tok].item()
                prefix += (tok,)
            best = max(best, (lp / (n + 1) ** alpha, list(seq)), key=lambda x: x[0])
    return best


@pytest.mark.parametrize("alpha,min_len", [(1.0, 0), (0.0, 1), (2.0, 2)])
def test_beam_search_equals_exhaustive(alpha, min_len):
    model, max_len = FixedScoreModel(vocab=6), 4  # content tokens {3, 4, 5}: 3^3 = 27 prefixes of length 3
    src = torch.tensor([[11], [12], [13]])
    seqs, scores = beam_search(model, src, torch.ones_like(src, dtype=torch.bool), bos=BOS, eos=EOS, pad=PAD,
                               beam=27, max_len=max_len, min_len=min_len, length_penalty=alpha)
    for b, src_id in enumerate([11, 12, 13]):
        want_score, want_seq = exhaustive_best(model, src_id, max_len=max_len, min_len=min_len, alpha=alpha)
        assert seqs[b] == want_seq and scores[b] == pytest.approx(want_score, abs=1e-5)
    greedy = greedy_search(model, src, torch.ones_like(src, dtype=torch.bool), bos=BOS, eos=EOS, pad=PAD,
                           max_len=max_len, min_len=min_len)
    beam1, _ = beam_search(model, src, torch.ones_like(src, dtype=torch.bool), bos=BOS, eos=EOS, pad=PAD, beam=1,
                           max_len=max_len, min_len=min_len, length_penalty=alpha)
    assert greedy == beam1


def test_trigram_blocking():
    model = FixedScoreModel(vocab=5)  # content {3, 4}: long outputs must repeat trigrams unless blocked
    src = torch.tensor([[1], [2]])
    for beam in (1, 3):
        out, *_ = beam_search(model, src, torch.ones_like(src, dtype=torch.bool), bos=BOS, eos=EOS, pad=PAD,
                              beam=beam, max_len=12, min_len=0, length_penalty=1.0, no_repeat_ngram=3)
        for seq in out:
            grams = [tuple(seq[i:i + 3]) for i in range(len(seq) - 2)]
            assert len(grams) == len(set(grams))


def tiny_seq2seq(mixer: str = "transformer", decoder_mixer: dict | None = None, **kw) -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(vocab_size=50, d_model=32, n_heads=4, dec_layers=2, dec_d_ff=64, dropout=0.0, max_tgt_len=16,
                   encoder=dict(mixer=mixer, n_layers=1, d_ff=64, max_len=32, **kw), decoder_mixer=decoder_mixer)


# decoder self-attention: softmax (None) or a causal mixer (fastformer/models/seq2seq.py ``decoder_mixer``)
DECODERS = [None, {"name": "fastformer"}, {"name": "fastformer", "variant": "official", "sharing": "qv"},
            {"name": "linear_transformer"}, {"name": "pooling_baseline"}, {"name": "transformer"},
            {"name": "performer", "n_features": 16}, {"name": "longformer", "n_global": 0, "window": 4}]
DEC_IDS = ["softmax"] + ["-".join(str(v) for v in d.values()) for d in DECODERS[1:]]


@pytest.mark.parametrize("decoder", DECODERS, ids=DEC_IDS)
def test_incremental_equals_full_decoding(decoder):
    model = tiny_seq2seq(decoder_mixer=decoder).eval()
    src = torch.randint(4, 50, (3, 20))
    mask = torch.arange(20)[None] < torch.tensor([[20], [13], [7]])
    tgt = torch.randint(4, 50, (3, 9))
    full = model(src, mask, tgt)  # (B, T, V)
    state = model.init_state(model.encode(src, mask), mask)
    steps = torch.stack([model.step(tgt[:, t:t + 1], state) for t in range(9)], dim=1)
    assert torch.allclose(full, steps, atol=1e-5)
    # two steps at once on top of a cache, then a reordered cache
    state = model.init_state(model.encode(src, mask), mask)
    model.decode(tgt[:, :4], state, incremental=True)
    assert torch.allclose(model.decode(tgt[:, 4:6], state, incremental=True), full[:, 4:6], atol=1e-5)
    perm = torch.tensor([2, 0, 1])
    state = model.reorder_state(state, perm)
    assert torch.allclose(model.step(tgt[perm, 6:7], state), full[perm, 6], atol=1e-5)
    # padded source positions do not matter
    src2 = src.masked_fill(~mask, 7)
    assert torch.allclose(model(src2, mask, tgt), full, atol=1e-5)


class FullRecompute(torch.nn.Module):
    """Wraps a Seq2Seq so every step re-runs the decoder on the whole prefix (no cache)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def encode(self, src, mask):
        return self.m.encode(src, mask), mask

    def init_state(self, mem, mask):
        return {"mem": mem[0], "mask": mask, "prefix": torch.zeros(mask.shape[0], 0, dtype=torch.long)}

    def step(self, tokens, state):
        state["prefix"] = torch.cat([state["prefix"], tokens], 1)
        st = self.m.init_state(state["mem"], state["mask"])
        return self.m.decode(state["prefix"], st, incremental=False)[:, -1]

    @staticmethod
    def reorder_state(state, index):
        return {k: v.index_select(0, index) for k, v in state.items()}


@pytest.mark.parametrize("decoder", DECODERS, ids=DEC_IDS)
def test_beam_search_cached_matches_recompute(decoder):
    model = tiny_seq2seq("fastformer", decoder_mixer=decoder).eval()
    src = torch.randint(4, 50, (2, 12))
    mask = torch.ones_like(src, dtype=torch.bool)
    kw = dict(bos=BOS, eos=EOS, pad=PAD, beam=3, max_len=10, min_len=2, length_penalty=1.0, no_repeat_ngram=3)
    a = beam_search(model, src, mask, **kw)
    b = beam_search(FullRecompute(model), src, mask, **kw)
    assert a[0] == b[0] and a[1] == pytest.approx(b[1], abs=1e-4)


@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_training_step_per_mixer(mixer):
    model = tiny_seq2seq(mixer)
    src = torch.randint(4, 50, (2, 32))
    mask = torch.arange(32)[None] < torch.tensor([[32], [20]])
    tgt = torch.randint(4, 50, (2, 8))
    logits = model(src, mask, tgt[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tgt[:, 1:], label_smoothing=0.1)
    loss.backward()
    assert torch.isfinite(loss) and model.embed.weight.grad is not None
    mixer_grads = [p.grad for p in model.encoder.layers[0].mixer.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in mixer_grads) or not mixer_grads


def test_fastformer_decoder_layers_share_one_mixer_and_refuse_non_causal():
    model = tiny_seq2seq("fastformer", decoder_mixer={"name": "fastformer"})  # sharing qv+layer (the default)
    assert model.layers[0].self_mixer is model.layers[1].self_mixer and model.layers[0].self_mixer.causal
    assert not hasattr(model.layers[0], "self_qkv")
    with pytest.raises(ValueError, match="not a mixer with a causal form"):
        tiny_seq2seq(decoder_mixer={"name": "linformer"})


def test_task_end_to_end_and_table6(tmp_path, monkeypatch, check_sharded_eval):
    """Hydra config -> SummarizationTask -> Trainer (2 epochs, tiny) -> metrics.json -> Table 6 builder."""
    from hydra import compose, initialize_config_dir

    from fastformer.results import table6
    from fastformer.tasks.summarization import SummarizationTask
    from fastformer.train.logging import build_logger
    from fastformer.train.trainer import Trainer

    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("PROJECT_ROOT", str(root))
    write_fixture(tmp_path / "data" / "cnn_dailymail", "cnndm", "csv.gz", 40, name="sample")
    overrides = [f"paths.root_dir={root}", "experiment=cnndm/fastformer", "preset=quick", "logger=none",
                 f"data.root={tmp_path / 'data'}",
                 "data.files=sample.csv.gz", "data.max_train=24", "data.max_eval=6", "data.max_src_len=48",
                 "data.max_tgt_len=12", "data.vocab_size=400", f"data.cache_dir={tmp_path / 'cache'}",
                 "model.d_model=32", "model.n_heads=4", "trainer.max_epochs=2", "trainer.progress_bar=false",
                 "trainer.device=cpu", "task.batch_size=8", "task.val_rouge_docs=3", "task.generate.min_len=2"]
    with initialize_config_dir(str(root / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    run_dir = tmp_path / "runs" / "cnndm" / "fastformer" / "seed1"
    task = SummarizationTask(cfg)
    metrics = Trainer(cfg, task, run_dir, build_logger(cfg, str(run_dir))).fit()
    test = metrics["test"]
    for k in ("rouge1", "rouge2", "rougeL", "rougeLsum", "lead3_rouge1", "loss"):
        assert k in test and math.isfinite(test[k])
    assert 0 <= test["rouge1"] <= 100 and metrics["val"]["neg_loss"] == -metrics["val"]["loss"]
    assert metrics["best_epoch"] in (1, 2) and "val_rougeLsum" in metrics["history"][0]  # val ROUGE on 3 docs
    for split in ("val", "test"):  # 2 DDP shards of the evaluation give these metrics (NLL, ROUGE, lead-3)
        check_sharded_eval(task, task.build_model(), split)
    dumped = [json.loads(line) for line in (run_dir / "test_summaries.jsonl").read_text().splitlines()]
    assert dumped and {"id", "prediction", "reference"} <= set(dumped[0])  # inspectable outputs beside metrics.json
    # lead-3 of the fixture: the first 3 sentences contain the 2-sentence reference -> high recall, exact scorer
    docs = task.splits["test"]
    assert test["lead3_rouge1"] == pytest.approx(lead_baseline([e.source for e in docs],
                                                               [e.target for e in docs])["rouge1"])
    md = Path(table6.build(tmp_path / "runs", tmp_path / "results", "quick")).read_text()
    assert "| Fastformer |" in md and "Lead-3" in md and "ROUGE-Lsum" in md and "seeded split" in md
    assert f"{test['rouge1']:.2f}" in md and "38.54" in md  # ours and the paper's CNN/DM R-1 beside it
