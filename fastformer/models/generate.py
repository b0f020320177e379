"""Batched beam search and greedy decoding over an incremental decoder state.

Works with any model offering ``encode(src, src_mask) -> memory``, ``init_state(memory, src_mask) -> state``,
``step(tokens (R, 1), state) -> logits (R, V)`` (advances the state) and ``reorder_state(state, index) -> state``
(``fastformer.models.seq2seq.Seq2Seq`` does, with a key/value cache so each step costs one length-1 decoder pass).

Conventions: generation starts from ``bos``; a hypothesis ends with ``eos``; ``max_len`` counts generated tokens
*including* the final ``eos`` (``eos`` is forced at step ``max_len``); ``min_len`` is the minimum number of tokens
before ``eos``. Hypothesis score = sum of token log-probabilities (``eos`` included) / length ** ``length_penalty``
(length counts ``eos``; fairseq/Hugging Face convention; 0 = no normalisation). ``no_repeat_ngram=3`` is trigram
blocking (a token that would repeat an n-gram already in the hypothesis is banned). ``pad``/``bos`` are never generated.

Beam search keeps ``beam`` live hypotheses per input, takes the top ``2 * beam`` extensions, moves those ending in
``eos`` to the finished list and stops an input once it has ``beam`` finished hypotheses and no live one can still beat
the ``beam``-th best of them (an exact bound, since log-probabilities only add negative terms).
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


def _block_repeated_ngrams(logp: torch.Tensor, seqs: torch.Tensor, n: int) -> None:
    """Set to -inf (in place) every token that would complete an n-gram already present in its row of ``seqs``."""
    R, t = seqs.shape
    if n <= 0 or t < n:
        return
    grams = seqs.unfold(1, n, 1)  # (R, t-n+1, n) all n-grams so far
    prefix = seqs[:, t - (n - 1):]  # (R, n-1) the last n-1 tokens
    match = (grams[:, :, : n - 1] == prefix[:, None, :]).all(dim=-1)  # (R, t-n+1)
    rows, cols = match.nonzero(as_tuple=True)
    logp[rows, grams[rows, cols, n - 1]] = -math.inf


def _log_probs(model: nn.Module, tokens: torch.Tensor, state, step: int, seqs: torch.Tensor, *, eos: int,
               banned: Iterable[int], min_len: int, max_len: int, no_repeat_ngram: int) -> torch.Tensor:
    logp = torch.log_softmax(model.step(tokens, state).float(), dim=-1)  # (R, V)
    logp[:, list(banned)] = -math.inf
    if step < min_len:
        logp[:, eos] = -math.inf
    if step == max_len - 1:  # last allowed position: only eos
        keep = logp[:, eos].clone()
        logp.fill_(-math.inf)
        logp[:, eos] = keep
    _block_repeated_ngrams(logp, seqs, no_repeat_ngram)
    return logp


@torch.no_grad()
def greedy_search(model: nn.Module, src: torch.Tensor, src_mask: torch.Tensor, *, bos: int, eos: int, pad: int,
                  max_len: int, min_len: int = 0, no_repeat_ngram: int = 0) -> list[list[int]]:
    """Arg-max decoding -> per input the generated ids (without bos/eos)."""
    state = model.init_state(model.encode(src, src_mask), src_mask)
    B = src.shape[0]
    tokens = torch.full((B, 1), bos, dtype=torch.long, device=src.device)
    seqs: list[list[int]] = [[] for _ in range(B)]
    history = torch.zeros(B, 0, dtype=torch.long, device=src.device)  # (B, t) generated so far
    done = [False] * B
    for step in range(max_len):
        logp = _log_probs(model, tokens, state, step, history, eos=eos, banned=(pad, bos), min_len=min_len,
                          max_len=max_len, no_repeat_ngram=no_repeat_ngram)
        nxt = logp.argmax(dim=-1)  # (B,)
        history = torch.cat([history, nxt[:, None]], dim=1)
        for b, t in enumerate(nxt.tolist()):
            if not done[b]:
                if t == eos:
                    done[b] = True
                else:
                    seqs[b].append(t)
        if all(done):
            break
        tokens = nxt[:, None]
    return seqs


@torch.no_grad()
def beam_search(model: nn.Module, src: torch.Tensor, src_mask: torch.Tensor, *, bos: int, eos: int, pad: int,
                beam: int = 5, max_len: int, min_len: int = 0, length_penalty: float = 1.0,
                no_repeat_ngram: int = 0) -> tuple[list[list[int]], list[float]]:
    """Batched beam search -> (best ids per input without bos/eos, their length-normalised scores)."""
    if beam < 1 or max_len < 1 or not 0 <= min_len < max_len:
        raise ValueError(f"beam={beam}, max_len={max_len}, min_len={min_len}: need beam>=1 and 0<=min_len<max_len")
    B, K = src.shape[0], beam
    state = model.init_state(model.encode(src, src_mask), src_mask)
    state = model.reorder_state(state, torch.arange(B, device=src.device).repeat_interleave(K))  # rows b*K + k
    tokens = torch.full((B * K, 1), bos, dtype=torch.long, device=src.device)
    scores = torch.full((B, K), -math.inf, device=src.device)
    scores[:, 0] = 0.0  # all beams start identical: keep one
    seqs = torch.zeros(B * K, 0, dtype=torch.long, device=src.device)  # (B*K, t) live hypotheses
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    done = [False] * B
    for step in range(max_len):
        logp = _log_probs(model, tokens, state, step, seqs, eos=eos, banned=(pad, bos), min_len=min_len,
                          max_len=max_len, no_repeat_ngram=no_repeat_ngram)  # (B*K, V)
        V = logp.shape[-1]
        cand = (scores.view(-1, 1) + logp).view(B, K * V)  # (B, K*V) cumulative log-probs
        top_s, top_i = cand.topk(min(2 * K, K * V), dim=-1)  # (B, 2K)
        rows, new_tok, new_scores = [], [], []
        for b in range(B):
            live: list[tuple[int, int, float]] = []
            if not done[b]:
                for s, flat in zip(top_s[b].tolist(), top_i[b].tolist()):
                    if s == -math.inf or len(live) == K:
                        break
                    k, tok = divmod(flat, V)
                    if tok == eos:
                        finished[b].append((s / (step + 1) ** length_penalty, seqs[b * K + k].tolist()))
                    else:
                        live.append((b * K + k, tok, s))
                done[b] = _is_done(finished[b], live, K=K, step=step, max_len=max_len, alpha=length_penalty)
            while len(live) < K:  # padding rows for finished inputs or when too few extensions exist
                live.append((b * K, pad, -math.inf))
            for r, t, s in live:
                rows.append(r), new_tok.append(t), new_scores.append(s)
        if all(done):
            break
        index = torch.tensor(rows, device=src.device)
        scores = torch.tensor(new_scores, device=src.device).view(B, K)
        tokens = torch.tensor(new_tok, device=src.device)[:, None]  # (B*K, 1)
        seqs = torch.cat([seqs.index_select(0, index), tokens], dim=1)  # (B*K, t+1)
        state = model.reorder_state(state, index)
    best = [max(f, key=lambda x: x[0]) if f else (-math.inf, []) for f in finished]
    return [list(seq) for _, seq in best], [s for s, _ in best]


def _is_done(finished: list[tuple[float, list[int]]], live: list[tuple[int, int, float]], *, K: int, step: int,
             max_len: int, alpha: float) -> bool:
    """True when ``K`` hypotheses are finished and no live one can end with a better normalised score."""
    if not live:
        return True
    if len(finished) < K:
        return False
    kth = sorted((s for s, _ in finished), reverse=True)[K - 1]
    best_live = max(s for _, _, s in live)  # <= 0; later tokens only lower it
    length = max_len if alpha > 0 else step + 2  # length that maximises best_live / length**alpha
    return kth >= best_live / length ** alpha


def generate(model: nn.Module, src: torch.Tensor, src_mask: torch.Tensor, *, bos: int, eos: int, pad: int,
             beam: int, max_len: int, min_len: int = 0, length_penalty: float = 1.0,
             no_repeat_ngram: int = 0) -> list[list[int]]:
    """``beam == 1`` -> greedy search, else beam search; returns generated ids per input."""
    if beam == 1:
        return greedy_search(model, src, src_mask, bos=bos, eos=eos, pad=pad, max_len=max_len, min_len=min_len,
                             no_repeat_ngram=no_repeat_ngram)
    return beam_search(model, src, src_mask, bos=bos, eos=eos, pad=pad, beam=beam, max_len=max_len,
                       min_len=min_len, length_penalty=length_penalty, no_repeat_ngram=no_repeat_ngram)[0]
