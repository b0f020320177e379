"""ROUGE with the ``rouge-score`` package (Google's reimplementation of the Perl ROUGE-1.5.5 scorer).

Settings: Porter stemming on; F1 (``fmeasure``) of ROUGE-1, ROUGE-2, ROUGE-L (sentence-level LCS over the whole text)
and ROUGE-Lsum (summary-level LCS over newline-separated sentences, the variant usually reported as "ROUGE-L" for
CNN/DailyMail). Scores are averaged over documents and reported x100. Predictions and references are both
re-split into one sentence per line with the same splitter before scoring, so ROUGE-Lsum does not depend on whether
a model emits newlines.
"""
from __future__ import annotations

from collections.abc import Sequence

from rouge_score import rouge_scorer

from fastformer.data.summarization import split_sentences

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def sentences_per_line(text: str) -> str:
    return "\n".join(split_sentences(text))


def rouge(predictions: Sequence[str], references: Sequence[str], *, stemming: bool = True) -> dict[str, float]:
    """Mean F1 x100 for each of ``ROUGE_TYPES`` over aligned ``predictions``/``references``."""
    if len(predictions) != len(references):
        raise ValueError(f"rouge: {len(predictions)} predictions vs {len(references)} references")
    if not predictions:
        raise ValueError("rouge: no predictions to score")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=stemming)
    total = dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, ref in zip(predictions, references):
        scores = scorer.score(sentences_per_line(ref), sentences_per_line(pred))  # score(target, prediction)
        for k in ROUGE_TYPES:
            total[k] += scores[k].fmeasure
    return {k: 100.0 * v / len(predictions) for k, v in total.items()}


def lead_k(document: str, k: int = 3) -> str:
    """The first ``k`` sentences of ``document``, one per line (the lead-3 extractive baseline for k=3)."""
    return "\n".join(split_sentences(document)[:k])


def lead_baseline(documents: Sequence[str], references: Sequence[str], *, k: int = 3) -> dict[str, float]:
    """ROUGE of the lead-``k`` baseline, scored exactly like model outputs."""
    return rouge([lead_k(d, k) for d in documents], references)
