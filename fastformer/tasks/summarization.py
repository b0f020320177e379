"""Abstractive summarisation (CNN/DailyMail, PubMed; paper Table 6): encoder(mixer) + Transformer decoder, ROUGE.

Training: teacher forcing, token-level cross-entropy (``task.label_smoothing``, default 0 = the paper's plain
cross-entropy). Model selection (``monitor``, configs/task/summarization.yaml): ``neg_loss`` = minus the validation
token NLL (no smoothing) -- cheap and deterministic, the usual fairseq criterion; the paper does not say how it picked
epochs. Validation also reports ROUGE on its first ``task.val_rouge_docs`` documents (informational, or a monitor).
Test: ROUGE-1/2/L/Lsum F1 (fastformer.metrics.rouge) of beam-search summaries against the untruncated references,
plus the lead-3 baseline on the same documents with the same scorer (``lead3_*``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from fastformer.data.subword import BOS, EOS, PAD, SubwordVocab, cached_bpe
from fastformer.data.summarization import Example, SummarizationOptions
from fastformer.metrics.rouge import lead_baseline, rouge
from fastformer.models.generate import generate
from fastformer.models.seq2seq import Seq2Seq
from fastformer.tasks.base import Task, register_task

log = logging.getLogger(__name__)


class SummaryDataset(Dataset):
    """Examples tokenised on access: item = (source ids <= max_src, target ids <= max_tgt, index)."""

    def __init__(self, examples: list[Example], vocab: SubwordVocab, *, max_src: int, max_tgt: int):
        self.examples, self.vocab, self.max_src, self.max_tgt = examples, vocab, max_src, max_tgt

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> tuple[list[int], list[int], int]:
        ex = self.examples[i]
        return self.vocab.encode(ex.source, self.max_src), self.vocab.encode(ex.target, self.max_tgt), i


def collate(items: list[tuple[list[int], list[int], int]]) -> dict[str, torch.Tensor]:
    """-> src (B, N), src_mask (B, N) bool, tgt_in = <s> y (B, T+1), tgt_out = y </s> (B, T+1) pad-filled, idx (B,)."""
    B = len(items)
    N = max(max(len(s), 1) for s, _, _ in items)
    T = max(len(t) for _, t, _ in items) + 1
    src = torch.full((B, N), PAD, dtype=torch.long)
    tgt_in = torch.full((B, T), PAD, dtype=torch.long)
    tgt_out = torch.full((B, T), PAD, dtype=torch.long)
    for b, (s, t, _) in enumerate(items):
        s = s or [EOS]  # an empty document still has one real token
        src[b, :len(s)] = torch.tensor(s)
        tgt_in[b, :len(t) + 1] = torch.tensor([BOS] + t)
        tgt_out[b, :len(t) + 1] = torch.tensor(t + [EOS])
    return {"src": src, "src_mask": src != PAD, "tgt_in": tgt_in, "tgt_out": tgt_out,
            "idx": torch.tensor([i for _, _, i in items])}


@register_task("summarization")
class SummarizationTask(Task):
    def setup(self) -> None:
        d = SummarizationOptions.from_cfg(self.cfg.data)  # the loader's options: one definition (config schema too)
        self.splits, self.file_info = d.load()
        train = self.splits["train"]
        n_vocab_docs = d.vocab_train_docs or len(train)
        texts = [t for ex in train[:n_vocab_docs] for t in (ex.source, ex.target)]
        self.vocab, self.vocab_path = cached_bpe(texts, vocab_size=int(d.vocab_size), cache_dir=d.cache_dir)
        self.max_src, self.max_tgt = int(d.max_src_len), int(d.max_tgt_len)
        ds = {s: SummaryDataset(exs, self.vocab, max_src=self.max_src, max_tgt=self.max_tgt)
              for s, exs in self.splits.items()}
        self._splits = {"train": ds["train"], "val": ds["validation"], "test": ds["test"]}
        n_val_gen = min(int(self.cfg.task.val_rouge_docs), len(ds["validation"]))
        if n_val_gen:  # the validation documents decoded every epoch for val ROUGE
            self._splits["val_rouge"] = torch.utils.data.Subset(ds["validation"], range(n_val_gen))
        self.outputs: dict[str, tuple[list[str], list[Example]]] = {}  # split -> (summaries, examples) last decoded
        log.info("summarization data: %s; vocab %d (%s)", self.file_info, len(self.vocab), self.vocab_path)

    def datasets(self) -> dict:
        return dict(self._splits)

    def collate(self, split: str):
        return collate

    def build_model(self) -> torch.nn.Module:
        m, kw = self.cfg.model, self.encoder_kwargs()
        return Seq2Seq(vocab_size=len(self.vocab), d_model=kw["d_model"], n_heads=kw["n_heads"],
                       encoder=dict(kw["encoder"], mixer=kw["mixer"], mixer_kwargs=kw["mixer_kwargs"],
                                    max_len=self.max_src),
                       dec_layers=int(m.dec_layers), dec_d_ff=int(m.dec_d_ff), dropout=kw["dropout"],
                       attn_dropout=float(m.attn_dropout), max_tgt_len=self.max_tgt + 1, pad_id=PAD,
                       tie_embeddings=bool(m.tie_embeddings),
                       decoder_mixer=OmegaConf.to_container(m.decoder_mixer, resolve=True)
                       if m.get("decoder_mixer") else None)

    def training_step(self, model, batch) -> tuple[torch.Tensor, int]:
        logits = model(batch["src"], batch["src_mask"], batch["tgt_in"])  # (B, T, V)
        loss = F.cross_entropy(logits.float().transpose(1, 2), batch["tgt_out"], ignore_index=PAD,
                               label_smoothing=float(self.cfg.task.label_smoothing))
        return loss, int(batch["src_mask"].sum() + (batch["tgt_out"] != PAD).sum())

    def _nll(self, model, batches) -> list[tuple[float, int]]:
        """(summed token NLL, target tokens) per batch of ``batches`` (device batches of one split)."""
        out = []
        for batch in batches:
            logits = model(batch["src"], batch["src_mask"], batch["tgt_in"])
            out.append((F.cross_entropy(logits.float().transpose(1, 2), batch["tgt_out"], ignore_index=PAD,
                                        reduction="sum").item(), int((batch["tgt_out"] != PAD).sum())))
        return out

    def decode(self, model, batches) -> list[tuple[str, int]]:
        """(summary, index of its example) for every document of ``batches`` (device batches of one split)."""
        g = self.cfg.task.generate
        max_len = int(g.max_len) if g.get("max_len") else self.max_tgt
        out = []
        for batch in batches:
            ids = generate(model, batch["src"], batch["src_mask"], bos=BOS, eos=EOS, pad=PAD,
                           beam=int(g.beam), max_len=max_len + 1, min_len=min(int(g.min_len), max_len),
                           length_penalty=float(g.length_penalty),
                           no_repeat_ngram=int(g.no_repeat_ngram))
            out += [(self.vocab.decode(s), int(i)) for s, i in zip(ids, batch["idx"])]
        return out

    def _examples(self, split: str, idx: list[int]) -> list[Example]:
        ds = self.dataset(split)
        base = ds.dataset if isinstance(ds, torch.utils.data.Subset) else ds
        return [base.examples[i] for i in idx]

    def _gen_split(self, split: str) -> str | None:
        return ("val_rouge" if self.has_split("val_rouge") else None) if split == "val" else split

    def eval_splits(self, split: str) -> tuple[str, ...]:
        gen = self._gen_split(split)
        return (split,) if gen in (None, split) else (split, gen)

    def eval_outputs(self, model, split: str, batches, device) -> list:
        """``val``: token NLL + the decoded ``val_rouge`` subset (when task.val_rouge_docs > 0); ``test`` (and other
        splits): NLL + every document decoded. Records: ("nll", sum, count) per batch, ("gen", summary, index)."""
        out = [("nll", s, c) for s, c in self._nll(model, batches[split])]
        gen = self._gen_split(split)
        if gen is not None:
            out += [("gen", p, i) for p, i in self.decode(model, batches[gen])]
        return out

    def eval_metrics(self, outputs: list, split: str) -> dict[str, float]:
        """NLL over every batch; ROUGE of the decoded documents; on ``test`` also lead-3 on the same documents."""
        total, count = sum(o[1] for o in outputs if o[0] == "nll"), sum(o[2] for o in outputs if o[0] == "nll")
        nll = total / max(count, 1)
        out = {"loss": nll, "neg_loss": -nll}
        gen = sorted((o[2], o[1]) for o in outputs if o[0] == "gen")  # document order, whatever the shards
        if not gen:
            return out
        preds, exs = [p for _, p in gen], self._examples(self._gen_split(split), [i for i, _ in gen])
        self.outputs[split] = (preds, exs)
        refs = [e.target for e in exs]
        out.update(rouge(preds, refs))
        out["gen_len_words"] = sum(len(p.split()) for p in preds) / len(preds)
        if split == "test":
            out.update({f"lead3_{k}": v for k, v in lead_baseline([e.source for e in exs], refs).items()})
        return out

    def write_outputs(self, run_dir: str) -> None:
        """The test summaries next to metrics.json (inspectable outputs, not just numbers)."""
        import json

        from fastformer.utils import atomic_write_text

        preds, exs = self.outputs.get("test", ([], []))
        atomic_write_text(Path(run_dir) / "test_summaries.jsonl", "".join(
            json.dumps({"id": e.id, "prediction": p, "reference": e.target}) + "\n" for p, e in zip(preds, exs)))

    def data_info(self) -> dict:
        d, g = self.cfg.data, self.cfg.task.generate
        return {"data_used": f"{d.name}: {self.file_info['files']}", "sizes": self.file_info["sizes"],
                "vocab": f"byte-level BPE, {len(self.vocab)} entries, trained on the training split",
                "max_src_len": self.max_src, "max_tgt_len": self.max_tgt,
                "decode": f"{'greedy' if int(g.beam) == 1 else f'beam {int(g.beam)}'}, length_penalty "
                          f"{float(g.length_penalty)}, min_len {int(g.min_len)}, max_len "
                          f"{int(g.max_len) if g.get('max_len') else self.max_tgt} tokens, no_repeat_ngram "
                          f"{int(g.no_repeat_ngram)}",
                "rouge": "rouge-score, stemming, F1; R-L = rougeLsum (sentence-split, newline-joined)"}
