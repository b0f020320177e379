"""News recommendation: MIND parsing, official metrics (hand-computed), synthetic MIND, model per mixer, end-to-end."""
from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from fastformer.data.mind import load_split, parse_impressions, read_behaviors, read_news
from fastformer.data.synthetic_mind import make_synthetic_mind
from fastformer.metrics.ranking import (
    impression_metrics,
    mean_impression_metrics,
    ndcg_score,
    score_prediction_file,
    scores_to_ranks,
    write_prediction,
    write_truth,
)
from fastformer.mixers import MIXERS
from fastformer.models.newsrec import NewsRecModel

REAL_NEWS = Path(__file__).resolve().parents[2] / "shared/data/mind/MINDsmall_sample/news.tsv"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# ------------------------------------------------------------------------------------------------ metrics
def test_metrics_hand_computed():
    # order by score: clicked, -, -, clicked
    m = impression_metrics([1, 0, 0, 1], [0.9, 0.8, 0.7, 0.1])
    assert m["auc"] == pytest.approx(2 / 4)  # pos 0.9 beats both negatives, pos 0.1 beats none
    assert m["mrr"] == pytest.approx((1 / 1 + 1 / 4) / 2)
    ideal = 1 + 1 / math.log2(3)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(5)) / ideal)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(5)) / ideal)
    assert ndcg_score(np.array([1, 0, 0, 1.0]), np.array([0.9, 0.8, 0.7, 0.1]), 2) == pytest.approx(1 / ideal)
    m = impression_metrics([0, 1, 0], [0.2, 0.5, 0.9])  # clicked news ranked 2nd of 3
    assert (m["auc"], m["mrr"], m["ndcg@5"]) == pytest.approx((0.5, 0.5, 1 / math.log2(3)))
    assert impression_metrics([1, 0], [0.5, 0.5])["auc"] == pytest.approx(0.5)  # ties count 1/2


def test_mean_metrics_skips_single_class_and_unlabelled():
    out = mean_impression_metrics([([1, 0], [0.9, 0.1]), ([0, 1], [0.9, 0.1]), ([1, 1], [0.3, 0.2]),
                                   ([0, 0], [0.3, 0.2]), ([], [])])
    assert out["auc"] == pytest.approx(0.5) and out["mrr"] == pytest.approx(0.75)
    assert (out["n_impressions"], out["n_single_class"]) == (2, 2)
    with pytest.raises(ValueError, match="single class"):
        mean_impression_metrics([([1, 1], [0.3, 0.2])], single_class="raise")


def test_prediction_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(str(i + 1), rng.random(int(rng.integers(2, 9)))) for i in range(20)]
    labels = [(i, (rng.random(len(s)) < 0.3).astype(int)) for i, s in rows]
    for _, lab in labels:
        lab[0], lab[-1] = 1, 0
    assert scores_to_ranks([0.1, 0.9, 0.5]) == [3, 1, 2]
    pred = write_prediction(tmp_path / "prediction.txt", rows + [("21", [0.3, 0.7])])
    truth = write_truth(tmp_path / "truth.txt", [(i, lab.tolist()) for i, lab in labels] + [("21", [])])
    assert pred.read_text().splitlines()[-1] == "21 [2,1]"  # official format: no spaces inside the list
    direct = mean_impression_metrics([(lab, s) for (_, lab), (_, s) in zip(labels, rows)])
    assert score_prediction_file(truth, pred) == pytest.approx(direct)
    (tmp_path / "bad.txt").write_text("1 [1,2]\n")
    with pytest.raises(ValueError, match="does not match"):
        score_prediction_file(truth, tmp_path / "bad.txt")


# ------------------------------------------------------------------------------------------------ loader
def test_parse_behaviors_and_news():
    assert parse_impressions("N1-1 N22-0") == (["N1", "N22"], [1, 0])
    assert parse_impressions("N1 N22") == (["N1", "N22"], None)  # MINDlarge_test
    imps, stats = read_behaviors(["1\tU1\t11/11/2019 9:05:58 AM\tN1 N2\tN3-1 N4-0\n",
                                  "2\tU2\t11/12/2019 1:00:00 PM\t\tN3-0 N9-1\n", "3\tU3\tt\tN2\tN3 N4\n"])
    assert imps[0].history == ["N1", "N2"] and imps[1].history == [] and stats["missing_history"] == 1
    assert imps[2].labels is None and imps[1].labels == [0, 1]
    news = read_news(["N1\tnews\tpolitics\tA title\tAn abstract\turl\t[]\t[]\n", "N2\tsports\tnfl\tShort\n"])
    assert news["N2"].title == "Short" and news["N1"].category == "news"


def test_load_zip_and_unknown_ids(tmp_path):
    with zipfile.ZipFile(tmp_path / "MINDsmall_dev.zip", "w") as z:
        z.writestr("news.tsv", "N1\tnews\tx\tOne\t\t\t[]\t[]\nN2\tnews\tx\tTwo\t\t\t[]\t[]\n")
        z.writestr("behaviors.tsv", "1\tU1\tt\tN1 N7\tN2-1 N8-0 N1-0\n2\tU2\tt\t\tN9-1\n")
    sp = load_split(tmp_path, version="small", split="dev")
    assert sp.stats["unknown_history_ids"] == 1 and sp.stats["unknown_candidate_ids"] == 2
    assert sp.stats["impressions_dropped_no_candidates"] == 1 and len(sp.impressions) == 1
    assert sp.impressions[0].candidates == ["N2", "N1"] and sp.impressions[0].labels == [1, 0]
    with pytest.raises(FileNotFoundError, match="data.test_split=dev"):
        load_split(tmp_path, version="small", split="test")


@pytest.mark.skipif(not REAL_NEWS.exists(), reason="real MIND sample not present")
def test_real_sample_counts_unknown_ids(tmp_path):
    (tmp_path / "MINDsmall_train").symlink_to(REAL_NEWS.parent)
    sp = load_split(tmp_path, version="small", split="train")
    assert len(sp.news) == 2000 and sp.stats["missing_history"] > 0
    assert sp.stats["unknown_candidate_ids"] > 0 and sp.summary()["impressions"] == len(sp.impressions)


# ------------------------------------------------------------------------------------------------ synthetic MIND
def _history_topic_auc(root: Path, split: str) -> float:
    sp = load_split(root, version="synthetic", split=split)
    cat = {n: v.category for n, v in sp.news.items()}
    pairs = [(imp.labels, [sum(cat[h] == cat[c] for h in imp.history) for c in imp.candidates])
             for imp in sp.impressions]
    return mean_impression_metrics(pairs)["auc"]


def test_synthetic_format_and_signal(tmp_path):
    kw = dict(n_news=200, n_topics=5, n_users=100, impressions={"train": 300, "dev": 100, "test": 50}, seed=3)
    make_synthetic_mind(tmp_path / "a", **kw)
    make_synthetic_mind(tmp_path / "b", **kw)
    for f in ("news.tsv", "behaviors.tsv"):
        a, b = (tmp_path / run / "MINDsynthetic_train" / f for run in ("a", "b"))
        assert a.read_text() == b.read_text()
    sp = load_split(tmp_path / "a", version="synthetic", split="test")
    assert len(sp.impressions) == 50 and all(0 < sum(i.labels) < len(i.labels) for i in sp.impressions)
    assert _history_topic_auc(tmp_path / "a", "dev") > 0.65  # clicks follow the users' topic preferences


@pytest.mark.skipif(not REAL_NEWS.exists(), reason="real MIND sample not present")
def test_synthetic_over_real_news(tmp_path):
    make_synthetic_mind(tmp_path, news_tsv=REAL_NEWS, n_users=50, impressions={"train": 100, "dev": 20, "test": 20})
    sp = load_split(tmp_path, version="synthetic", split="train")
    with open(REAL_NEWS, encoding="utf-8") as f:
        real = read_news(f)
    assert sp.news.keys() == real.keys() and sp.news["N34700"].title == real["N34700"].title
    assert sum(sp.stats.values()) == sp.stats["missing_history"]  # no unknown ids


# ------------------------------------------------------------------------------------------------ model
MIXER_OPTS = {"longformer": {"window": 4, "n_global": 2}, "bigbird": {"block_size": 2}, "linformer": {"proj_len": 4},
              "poolingformer": {"window": 4}}


@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_model_step_per_mixer(mixer):
    torch.manual_seed(0)
    model = NewsRecModel(vocab_size=30, d_model=16, n_heads=2, mixer=mixer, mixer_kwargs=MIXER_OPTS.get(mixer, {}),
                         max_title_len=8, max_history=6)
    tokens = torch.randint(1, 30, (7, 8))
    mask = torch.arange(8)[None] < torch.tensor([8, 3, 5, 1, 8, 2, 0])[:, None]  # row 6: empty title
    hist_idx = torch.tensor([[1, 2, 3, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    hist_mask = torch.tensor([[True] * 3 + [False] * 3, [False] * 6])  # user 2 has no history
    cand_idx = torch.tensor([[4, 5, 6], [1, 4, 6]])
    scores = model(tokens, mask, hist_idx, hist_mask, cand_idx)
    assert scores.shape == (2, 3) and torch.isfinite(scores).all()
    loss = torch.nn.functional.cross_entropy(scores, torch.zeros(2, dtype=torch.long))
    loss.backward()
    assert model.news_encoder.embed.weight.grad.abs().sum() > 0
    model.eval()  # padded history slots and padded title tokens do not change the scores
    ref = model(tokens, mask, hist_idx, hist_mask, cand_idx)
    real = mask.clone()
    real[6, 0] = True  # an empty title / history attends to its first (padding) slot, which must stay as is
    hist_real = hist_mask.clone()
    hist_real[1, 0] = True
    out = model(tokens.masked_fill(~real, 7), mask, hist_idx.masked_fill(~hist_real, 5), hist_mask, cand_idx)
    assert torch.allclose(out, ref, atol=1e-5)


def test_hf_news_encoder_tiny_bert(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16)
    transformers.BertModel(cfg).save_pretrained(tmp_path)
    model = NewsRecModel(vocab_size=1, d_model=8, n_heads=2, mixer="fastformer", news_encoder="hf",
                         hf_path=str(tmp_path), max_title_len=6, max_history=4)
    tokens, mask = torch.randint(1, 40, (3, 6)), torch.ones(3, 6, dtype=torch.bool)
    scores = model(tokens, mask, torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.bool), torch.tensor([[0, 1]]))
    assert scores.shape == (1, 2) and torch.isfinite(scores).all()
    with pytest.raises(FileNotFoundError, match="hf_path"):
        NewsRecModel(vocab_size=1, news_encoder="hf", hf_path=str(tmp_path / "missing"))


# ------------------------------------------------------------------------------------------------ task end-to-end
def _cfg(root: Path, tmp: Path, mixer: str = "transformer", **data):
    return OmegaConf.create({
        "seed": 1, "paths": {"cache_dir": str(tmp / "cache")},
        "task": {"name": "newsrec", "monitor": "auc", "batch_size": 32, "neg_k": 4, "eval_batch_size": 64,
                 "news_batch_size": 128, "num_workers": 0},
        "data": {"name": "mind_rec", "root": str(root), "version": "synthetic", "train_split": "train",
                 "val_split": "dev", "test_split": "test", "predict_split": None, "max_title_len": 48,
                 "max_history": 50, "tokenizer": "regex", "max_train_impressions": None,
                 "max_eval_impressions": None, "seed": 0, **data},
        "model": {"d_model": 32, "n_heads": 2, "dropout": 0.0, "news_encoder": "mixer", "hf_path": None,
                  "embedding_init": "random", "encoder": {"n_layers": 1}, "mixer": {"name": mixer}}})


def test_end_to_end_beats_random_and_popularity(tmp_path, check_sharded_eval):
    from fastformer.tasks.newsrec import NewsRecTask
    make_synthetic_mind(tmp_path / "d", n_news=150, n_topics=4, n_users=150, user_alpha=0.15, beta=3.0, pop_std=0.3,
                        topic_word_frac=0.8, max_history=12, max_candidates=8,
                        impressions={"train": 1200, "dev": 200, "test": 200}, seed=0)
    torch.manual_seed(0)
    task = NewsRecTask(_cfg(tmp_path / "d", tmp_path))
    task.setup()
    model = task.build_model()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(4):
        for batch in task.loader("train"):
            loss, n_tok = task.training_step(model, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        out = task.evaluate(model, "test")
    assert out["n_impressions"] == 200 and abs(out["rand_auc"] - 50) < 8
    assert out["auc"] > 65 and out["auc"] > out["pop_auc"] + 5, out
    check_sharded_eval(task, model, "test")  # 2 DDP shards of the impressions give the same AUC/MRR/nDCG
    pred = task.predict(model, tmp_path / "pred")  # official file, scored like the official script
    assert pred["auc"] * 100 == pytest.approx(out["auc"], abs=1e-6)
    assert "synthetic MIND over synthetic titles" in task.data_info()["data_used"]


def test_experiment_configs_compose():
    from hydra import compose, initialize_config_dir
    os.environ.setdefault("PROJECT_ROOT", str(CONFIGS.parent))
    from fastformer.cells import cells

    names = [c.split("/")[1] for c in cells() if c.startswith("mind_rec/")]
    assert {"fastformer", "transformer", "plm_nr", "fastformer_plm_nr"} <= set(names)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        for name in names:
            cfg = compose("train", overrides=[f"experiment=mind_rec/{name}", "preset=quick", "logger=none"])
            assert cfg.task.name == "newsrec" and cfg.data.max_title_len == 48 and cfg.model.encoder.n_layers == 1
            assert cfg.model.news_encoder == ("hf" if "plm" in name else "mixer")
