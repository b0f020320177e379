"""Word-level text pipeline of the paper: tokeniser, training-split vocabulary, optional GloVe initialisation.

Tokenisation (PAPER.md §3: NLTK ``word_tokenize``, lower-cased). ``word_tokenize`` needs NLTK's punkt data, which
cannot be downloaded here, so ``tokenizer="regex"`` (default) is a data-free equivalent of its Treebank rules:
words keep inner hyphens/periods (``e-mail``, ``3.5``, ``u.s``), clitics split off (``don't -> do n't``,
``it's -> it 's``), every other punctuation mark is its own token (``...`` kept whole), so a sentence-final
period is split as punkt + Treebank would. ``"treebank"`` / ``"wordpunct"`` use NLTK's data-free tokenisers.

GloVe (optional, PAPER.md A.2): rows of in-vocabulary words come from a local ``glove.*.txt``; OOV rows are drawn
from a Gaussian with the mean and covariance of the found vectors. The (V, d_glove) table is then mapped to the model
width: identity when equal, PCA onto the top ``d_model`` principal directions of the found vectors when
``d_glove > d_model`` (``projection="pca"``), else a fixed seeded Gaussian projection (``"random"``, also used when
``d_glove < d_model``). The paper does not say how 300-d GloVe met its 256-d hidden size (PAPER.md §3).
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily so tokeniser worker processes start fast
    import torch

log = logging.getLogger(__name__)

PAD, UNK = "<pad>", "<unk>"
_TOKEN_RE = re.compile(
    r"\w+(?=n't\b)"            # do|n't, ca|n't
    r"|n't\b"                   # the clitic itself
    r"|'(?:s|re|ve|ll|d|m)\b"   # 's 're 've 'll 'd 'm
    r"|\w+(?:[-.]\w+)*"         # words, e-mail, 3.5, u.s
    r"|\.\.\."                  # ellipsis
    r"|[^\w\s]"                 # any other punctuation mark
)


def regex_tokenize(text: str, *, lower: bool = True) -> list[str]:
    """Data-free equivalent of NLTK ``word_tokenize`` (see module docstring)."""
    text = text.replace("\u2019", "'").replace("``", '"').replace("''", '"')
    return _TOKEN_RE.findall(text.lower() if lower else text)


def _nltk_tokenize(text: str, *, name: str, lower: bool) -> list[str]:
    from nltk.tokenize import TreebankWordTokenizer, wordpunct_tokenize
    text = text.lower() if lower else text
    return TreebankWordTokenizer().tokenize(text) if name == "treebank" else wordpunct_tokenize(text)


def get_tokenizer(name: str = "regex", *, lower: bool = True) -> Callable[[str], list[str]]:
    """``regex`` (default) | ``treebank`` | ``wordpunct`` -> a picklable ``str -> list[str]`` callable."""
    if name == "regex":
        return partial(regex_tokenize, lower=lower)
    if name in ("treebank", "wordpunct"):
        return partial(_nltk_tokenize, name=name, lower=lower)
    raise ValueError(f"data.tokenizer={name!r} is not one of ['regex', 'treebank', 'wordpunct']")


def _tokenize_chunk(args: tuple[Callable[[str], list[str]], list[str]]) -> list[list[str]]:
    fn, texts = args
    return [fn(t) for t in texts]


def tokenize_all(texts: Sequence[str], tokenizer: Callable[[str], list[str]], *, workers: int | None = None,
                 chunk: int = 2000) -> list[list[str]]:
    """Tokenise many texts, order preserved; forked ``workers`` (default: up to 8 CPUs when > 20k texts).

    Workers are forked (no re-import of ``__main__``, so it works from notebooks and stdin); where fork is
    unavailable or a worker dies, tokenisation falls back to this process with a warning.
    """
    import multiprocessing as mp
    if workers is None:
        workers = min(8, os.cpu_count() or 1) if len(texts) > 20000 else 0
    if workers > 1 and "fork" in mp.get_all_start_methods():
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool
        jobs = [(tokenizer, list(texts[i:i + chunk])) for i in range(0, len(texts), chunk)]
        try:
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
                return [toks for part in pool.map(_tokenize_chunk, jobs) for toks in part]
        except (BrokenProcessPool, OSError) as err:
            log.warning("parallel tokenisation failed (%s); tokenising in one process", err)
    return [tokenizer(t) for t in texts]


class Vocab:
    """Token <-> id map with ``<pad>`` = 0 and ``<unk>`` = 1; ids ordered by descending training frequency."""

    pad_id, unk_id = 0, 1

    def __init__(self, itos: Sequence[str]):
        if list(itos[:2]) != [PAD, UNK]:
            raise ValueError(f"Vocab itos must start with [{PAD!r}, {UNK!r}], got {list(itos[:2])}")
        self.itos = list(itos)
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], *, max_size: int | None = None, min_freq: int = 1) -> Vocab:
        """Words with count >= ``min_freq``, most frequent first (ties alphabetical), ``max_size`` incl. specials."""
        counts = Counter()
        for toks in token_lists:
            counts.update(toks)
        words = sorted((w for w, c in counts.items() if c >= min_freq and w not in (PAD, UNK)),
                       key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max(0, max_size - 2)]
        return cls([PAD, UNK, *words])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Sequence[str]) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        return [get(t, unk) for t in tokens]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.itos, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> Vocab:
        return cls(json.loads(Path(path).read_text()))


def read_glove(path: Path, vocab: Vocab) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors of vocabulary words found in a GloVe text file -> (found_ids (F,), vectors (F, d_glove))."""
    import torch
    ids, rows, dim = [], [], None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            word, _, rest = line.rstrip().partition(" ")
            idx = vocab.stoi.get(word)
            if idx is None or idx < 2 or not rest:
                continue
            vals = rest.split(" ")
            if dim is None:
                dim = len(vals)
            if len(vals) != dim:  # e.g. glove.840B lines whose "word" contains a space
                continue
            ids.append(idx)
            rows.append([float(v) for v in vals])
    if not rows:
        raise ValueError(f"glove file {path}: no vocabulary word found; check data.glove_path / the file format")
    return torch.tensor(ids), torch.tensor(rows, dtype=torch.float32)


def _projection(found: torch.Tensor, d_model: int, method: str, gen: torch.Generator) -> torch.Tensor:
    """(d_glove, d_model) linear map; PCA directions of ``found`` or a fixed Gaussian matrix."""
    import torch
    d_glove = found.shape[1]
    if method == "pca" and d_glove >= d_model:
        centred = found - found.mean(0)                                        # (F, d_glove)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)              # vh: (min(F, d_glove), d_glove)
        if vh.shape[0] >= d_model:
            return vh[:d_model].T                                              # (d_glove, d_model)
        log.warning("glove PCA: only %d vectors found (< d_model=%d); using a random projection", len(found), d_model)
    elif method not in ("pca", "random"):
        raise ValueError(f"data.glove_projection={method!r} is not one of ['pca', 'random']")
    return torch.randn(d_glove, d_model, generator=gen) / d_model ** 0.5    # (d_glove, d_model), norm-preserving


def glove_init(vocab: Vocab, glove_path: Path, d_model: int, *, projection: str = "pca",
               seed: int = 0) -> tuple[torch.Tensor, dict]:
    """Embedding table (len(vocab), d_model) from GloVe with A.2 OOV sampling; returns (table, stats)."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    found_ids, found = read_glove(glove_path, vocab)                           # (F,), (F, d_glove)
    d_glove = found.shape[1]
    mean = found.mean(0)                                                        # (d_glove,)
    cov = torch.cov(found.T) if len(found) > 1 else torch.zeros(d_glove, d_glove)  # (d_glove, d_glove)
    jitter = 1e-5 * cov.diagonal().mean().clamp_min(1e-8)
    chol = torch.linalg.cholesky(cov + jitter * torch.eye(d_glove))
    table = mean + torch.randn(len(vocab), d_glove, generator=gen) @ chol.T     # (V, d_glove) ~ N(mean, cov)
    table[found_ids] = found
    if d_glove != d_model:
        proj = _projection(found, d_model, projection, gen)                    # (d_glove, d_model)
        table = (table - mean) @ proj if projection == "pca" else table @ proj  # (V, d_model)
    table[Vocab.pad_id] = 0.0
    stats = {"glove_path": str(glove_path), "glove_dim": d_glove, "found": int(len(found_ids)),
             "oov": int(len(vocab) - 2 - len(found_ids)), "projection": projection if d_glove != d_model else "none"}
    log.info("GloVe init: %d/%d words found in %s (dim %d -> %d, %s)", stats["found"], len(vocab) - 2,
             glove_path, d_glove, d_model, stats["projection"])
    return table, stats
