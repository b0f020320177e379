"""Synthetic MIND in the official file format: ``MINDsynthetic_{train,dev,test}/{news.tsv,behaviors.tsv}``.

Generative story (all under one seed):

* news: ``n_topics`` categories; without a real news.tsv each title mixes words from its topic's own vocabulary with
  shared filler words. Given a real ``news.tsv`` (e.g. the 2,000 MINDsmall news here) its ids, categories and titles
  are kept and the *categories are the topics*. Every news item has a popularity ``q_n ~ N(0, pop_std)``.
* users: topic preferences ``p_u ~ Dirichlet(user_alpha)`` (sparse: most users like a few topics); the click weight of
  news ``n`` for user ``u`` is ``w_un = p_u[topic(n)]^beta * exp(q_n)``.
* history: 0..``max_history`` distinct news drawn with probability ``∝ w_un`` (``p_empty_history`` have none).
* impression: 2..``max_candidates`` distinct news drawn uniformly; 1-3 of them (never all) are clicked, drawn without
  replacement ``∝ w_un`` -- so every impression has a click and a non-click, like real MIND.

All splits share one news.tsv and one user population (MIND's dev/test users largely appear in train too). Labels are
written for every split, test included, so test metrics exist; ``synthetic_info.json`` records the parameters and the
source of the titles (one copy per split folder).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from fastformer.data.mind import News, read_news

_ONSETS = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "tr", "pl"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]


def _words(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    """``n`` distinct pronounceable pseudo-words of 2-3 syllables, none in ``taken``."""
    out: list[str] = []
    while len(out) < n:
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(int(rng.integers(2, 4))))
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


def _synthetic_news(rng: np.random.Generator, *, n_news: int, n_topics: int, topic_words: int, common_words: int,
                    topic_word_frac: float) -> list[News]:
    taken: set[str] = set()
    common = _words(rng, common_words, taken)
    vocab = [_words(rng, topic_words, taken) for _ in range(n_topics)]
    news = []
    for i in range(n_news):
        t = int(rng.integers(n_topics))
        length = int(rng.integers(6, 15))
        n_topic = max(1, int(rng.binomial(length, topic_word_frac)))
        words = list(rng.choice(vocab[t], n_topic)) + list(rng.choice(common, length - n_topic))
        rng.shuffle(words)
        title = " ".join(words).capitalize()
        news.append(News(f"N{i + 1}", f"topic{t}", f"topic{t}_{int(rng.integers(3))}", title, ""))
    return news


def _sample(rng: np.random.Generator, weights: np.ndarray, k: int) -> np.ndarray:
    """``k`` distinct indices drawn without replacement with probability ∝ ``weights`` (Gumbel top-k trick)."""
    keys = np.log(weights) + rng.gumbel(size=len(weights))  # (n,)
    return np.argsort(-keys)[:k]


def make_synthetic_mind(out_dir: str | Path, *, news_tsv: str | Path | None = None, n_news: int = 2000,
                        n_topics: int = 15, n_users: int = 2000, impressions: dict[str, int] | None = None,
                        max_history: int = 60, p_empty_history: float = 0.03, max_candidates: int = 20,
                        user_alpha: float = 0.3, beta: float = 1.5, pop_std: float = 0.5, topic_words: int = 40,
                        common_words: int = 80, topic_word_frac: float = 0.5, seed: int = 0) -> Path:
    """Write ``MINDsynthetic_{train,dev,test}`` under ``out_dir`` and return ``out_dir``.

    ``impressions`` maps split -> number of impressions (default train 20,000 / dev 3,000 / test 3,000); with
    ``news_tsv``, ``n_news`` smaller than the file keeps a seeded subset of its news.
    """
    rng = np.random.default_rng(seed)
    impressions = dict(impressions or {"train": 20_000, "dev": 3_000, "test": 3_000})
    if news_tsv is not None:
        with open(news_tsv, encoding="utf-8", newline="") as f:
            news = list(read_news(f, what=str(news_tsv)).values())
        if not news:
            raise ValueError(f"news_tsv={news_tsv} holds no news")
        if n_news < len(news):  # seeded subset of the real news, file order kept
            news = [news[i] for i in np.sort(rng.choice(len(news), size=n_news, replace=False))]
        cats = sorted({n.category for n in news})
        topic = np.array([cats.index(n.category) for n in news])
        n_topics, source = len(cats), f"real titles from {news_tsv} ({len(news)} news, {len(cats)} categories)"
    else:
        news = _synthetic_news(rng, n_news=n_news, n_topics=n_topics, topic_words=topic_words,
                               common_words=common_words, topic_word_frac=topic_word_frac)
        topic = np.array([int(n.category[5:]) for n in news])
        source = f"synthetic titles ({n_news} news, {n_topics} topic vocabularies)"
    pop = np.exp(rng.normal(0.0, pop_std, len(news)))                    # (N,)
    prefs = rng.dirichlet(np.full(n_topics, user_alpha), n_users)        # (U, T)
    weight = lambda u, idx=slice(None): (prefs[u, topic[idx]] + 1e-6) ** beta * pop[idx]  # click weights of user u
    histories = []
    for u in range(n_users):
        n_hist = 0 if rng.random() < p_empty_history else int(rng.integers(1, max_history + 1))
        histories.append([news[i].news_id for i in _sample(rng, weight(u), n_hist)] if n_hist else [])

    out_dir = Path(out_dir)
    start = datetime(2019, 11, 9)
    for s_idx, (split, n_imp) in enumerate(impressions.items()):
        folder = out_dir / f"MINDsynthetic_{split}"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "news.tsv", "w", encoding="utf-8") as f:
            for n in news:
                f.write("\t".join([n.news_id, n.category, n.subcategory, n.title, n.abstract, "", "[]", "[]"]) + "\n")
        users = rng.integers(n_users, size=n_imp)                                     # (I,)
        n_cands = rng.integers(2, max_candidates + 1, size=n_imp)                       # (I,)
        n_pos = np.minimum(rng.choice([1, 2, 3], size=n_imp, p=[0.7, 0.2, 0.1]), n_cands - 1)
        secs = rng.integers(2 * 86400, size=n_imp)                                      # (I,)
        with open(folder / "behaviors.tsv", "w", encoding="utf-8") as f:
            for i, u in enumerate(users.tolist()):
                cands = np.unique(rng.integers(len(news), size=3 * n_cands[i]))           # distinct, then shuffled
                cands = rng.permutation(cands)[: n_cands[i]]                              # (C,)
                clicked = set(cands[_sample(rng, weight(u, cands), n_pos[i])].tolist())
                t = start + timedelta(days=s_idx * 2, seconds=int(secs[i]))
                imps = " ".join(f"{news[c].news_id}-{int(c in clicked)}" for c in cands)
                f.write(f"{i + 1}\tU{u + 1}\t{t.strftime('%m/%d/%Y %I:%M:%S %p')}\t{' '.join(histories[u])}\t{imps}\n")
    info = {"data_used": f"synthetic MIND over {source}", "seed": seed, "n_users": n_users,
            "impressions": impressions, "n_topics": n_topics, "user_alpha": user_alpha, "beta": beta,
            "pop_std": pop_std, "max_history": max_history, "max_candidates": max_candidates}
    for split in impressions:
        (out_dir / f"MINDsynthetic_{split}" / "synthetic_info.json").write_text(json.dumps(info, indent=2))
    return out_dir
