"""A subword vocabulary shared by the summarization encoder and decoder, trained on the training split.

Choice (the paper does not say; PAPER.md §3): a **byte-level BPE** trained with the Hugging Face ``tokenizers`` library
on the training documents and summaries only (never on validation/test). Byte-level BPE has no out-of-vocabulary
tokens, round-trips text exactly (so generated summaries are decoded back to real text before ROUGE), and keeps the
newline between summary sentences as a token, so the model can emit sentence breaks for ROUGE-Lsum. The paper's
classification setup (NLTK words + GloVe) has no generation side; a shared subword vocabulary with tied
embeddings is the standard choice for abstractive summarisation.

Special tokens have fixed ids: ``<pad>`` 0, ``<s>`` 1 (decoder start), ``</s>`` 2 (end of summary), ``<unk>`` 3.
The trained tokenizer is cached as ``<cache_dir>/bpe-<hash>.json``; the hash covers the training texts and options.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
PAD, BOS, EOS, UNK = range(4)


class SubwordVocab:
    """Thin wrapper: ``encode(text, max_len) -> ids`` (no specials), ``decode(ids) -> text``, ids of specials."""

    pad_id, bos_id, eos_id, unk_id = PAD, BOS, EOS, UNK

    def __init__(self, tokenizer: Tokenizer):
        for i, tok in enumerate(SPECIALS):
            if tokenizer.token_to_id(tok) != i:
                raise ValueError(f"tokenizer must map {tok!r} to id {i}; retrain it with fastformer.data.subword")
        self.tok = tokenizer

    def __len__(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        ids = self.tok.encode(text, add_special_tokens=False).ids
        return ids if max_len is None else ids[:max_len]

    def encode_batch(self, texts: Sequence[str], max_len: int | None = None) -> list[list[int]]:
        out = [e.ids for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]
        return out if max_len is None else [ids[:max_len] for ids in out]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text, stopping at ``</s>`` and dropping other specials."""
        keep: list[int] = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i >= len(SPECIALS):
                keep.append(i)
        return self.tok.decode(keep, skip_special_tokens=True).strip()

    def save(self, path: str | Path) -> None:
        self.tok.save(str(path))

    @classmethod
    def load(cls, path: str | Path) -> SubwordVocab:
        return cls(Tokenizer.from_file(str(path)))


def train_bpe(texts: Iterable[str], *, vocab_size: int, min_frequency: int = 2) -> SubwordVocab:
    """Train a byte-level BPE of at most ``vocab_size`` entries (specials included) on ``texts``."""
    if vocab_size <= len(SPECIALS) + 256:
        raise ValueError(f"vocab_size={vocab_size} must exceed {len(SPECIALS) + 256} (specials + 256 byte symbols)")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return SubwordVocab(tok)


def cached_bpe(texts: Sequence[str], *, vocab_size: int, cache_dir: str | Path | None,
               min_frequency: int = 2) -> tuple[SubwordVocab, str]:
    """Train (or load from ``cache_dir``) the BPE for ``texts``; returns ``(vocab, path or "not cached")``."""
    h = hashlib.sha1(f"bpe|v1|{vocab_size}|{min_frequency}|{len(texts)}".encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    if cache_dir is None:
        return train_bpe(texts, vocab_size=vocab_size, min_frequency=min_frequency), "not cached"
    path = Path(cache_dir) / f"bpe-{h.hexdigest()[:16]}.json"
    if path.is_file():
        return SubwordVocab.load(path), str(path)
    vocab = train_bpe(texts, vocab_size=vocab_size, min_frequency=min_frequency)
    from fastformer.utils import atomic_path

    with atomic_path(path) as tmp:  # concurrent runs of a sweep never read a half-written file
        vocab.save(tmp)
    return vocab, str(path)
