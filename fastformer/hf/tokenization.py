"""A run's word-level vocabulary as a tokenizer Hugging Face loads (``PreTrainedTokenizerFast`` over a ``tokenizers``
WordLevel model) that gives the same ids as the repo's pipeline (fastformer/data/text.py).

The repo's ``regex`` tokenizer is Python ``re``: ``\\w``, ``\\s`` and ``\\b`` follow Python's Unicode tables, which
Oniguruma's (used by ``tokenizers``) do not match exactly (e.g. combining marks are ``\\w`` there, not in Python). So
the pattern is rewritten with explicit character classes computed from Python's own ``re`` at export time, ``\\b``
(which always follows a word character in this pattern) as "no word character next": the same matches, character
for character. Pipeline::

    normalizer     ’ -> '   `` -> "   '' -> "   (then lower-case when the run lower-cased; a capital sigma before a
                   non-letter becomes the final form, as Python's str.lower does)
    pre-tokenizer  split off whitespace runs (removed), then the token pattern (each match one piece)
    model          WordLevel(itos, unk="<unk>"); no special tokens added; padding id 0 ("<pad>") on the right
    truncation     model_max_length = the run's data.max_len (the dataset truncates the same way: the first max_len)

``wordpunct`` (``\\w+|[^\\w\\s]+``) is rewritten the same way. ``treebank`` (NLTK's sequence of substitutions) has no
exact ``tokenizers`` form: exporting a run that used it raises. Two differences remain: an empty text gives no token
here, while the repo's collate turns it into one ``<unk>``; and the final-sigma rule looks back over at most 3
case-ignorable characters (:func:`final_sigma_pattern`), where Python's looks back over any number.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

PAD, UNK = "<pad>", "<unk>"
EXACT_TOKENIZERS = ("regex", "wordpunct")


#: Word_Break MidLetter / MidNumLet / Single_Quote characters: case-ignorable besides the categories below
_MID = frozenset("'.:\u00b7\u0387\u055f\u05f4\u2018\u2019\u2024\u2027\ufe13\ufe52\ufe55\uff07\uff0e\uff1a")
_CLASSES = {
    "word": lambda c: re.match(r"\w", c) is not None,
    "space": lambda c: re.match(r"\s", c) is not None,
    "cased": lambda c: c.islower() or c.isupper() or c.istitle(),
    "case_ignorable": lambda c: unicodedata.category(c) in ("Mn", "Me", "Cf", "Lm", "Sk") or c in _MID,
}
# the rule skips case-ignorable characters first, so a cased one that is also case-ignorable (U+0345) never decides
_CLASSES["cased_only"] = lambda c: _CLASSES["cased"](c) and not _CLASSES["case_ignorable"](c)


@functools.cache
def _ranges(kind: str) -> str:
    """The code points (surrogates excluded) of class ``kind`` as Python sees them (``word``: what ``re`` matches
    with ``\\w``; ``space``: ``\\s``; ``cased_only`` / ``case_ignorable``: what ``str.lower``'s final-sigma rule
    uses), as the inside of an Oniguruma character class: ``\\x{61}-\\x{7a}...``."""
    pred = _CLASSES[kind]
    out, start, prev = [], None, None
    for cp in (*range(0xD800), *range(0xE000, 0x110000)):
        if pred(chr(cp)):
            if start is None:
                start = cp
            elif cp != prev + 1:
                out.append((start, prev))
                start = cp
            prev = cp
    if start is not None:
        out.append((start, prev))
    return "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in out)


def final_sigma_pattern(max_ignorable: int = 3) -> str:
    """Python's ``str.lower`` turns a capital sigma into the final form when a cased letter precedes it and none
    follows it (case-ignorable characters such as ``'`` or accents skipped on both sides). Oniguruma's look-behind is
    fixed-length, so up to ``max_ignorable`` case-ignorable characters between the preceding letter and the sigma."""
    cased, ign = f"[{_ranges('cased_only')}]", f"[{_ranges('case_ignorable')}]"
    behind = "|".join(cased + ign * k for k in range(max_ignorable + 1))
    return f"(?<={behind})\u03a3(?!(?>{ign}*){cased})"  # atomic: every case-ignorable is skipped, as Python does


def token_pattern(name: str = "regex") -> str:
    """The Oniguruma form of the repo tokenizer ``name`` (fastformer/data/text.py ``_TOKEN_RE`` for ``regex``)."""
    word, space = _ranges("word"), _ranges("space")
    w = f"[{word}]"
    nb = f"(?![{word}])"  # \b after a word character
    punct = f"[^{word}{space}]"
    if name == "regex":
        return (f"{w}+(?=n't{nb})"
                f"|n't{nb}"
                f"|'(?:s|re|ve|ll|d|m){nb}"
                f"|{w}+(?:[-.]{w}+)*"
                r"|\.\.\."
                f"|{punct}")
    if name == "wordpunct":
        return f"{w}+|{punct}+"
    raise ValueError(f"tokenizer {name!r} has no exact Hugging Face form; exportable: {list(EXACT_TOKENIZERS)}")


def build_backend(itos: Sequence[str], *, tokenizer: str = "regex", lowercase: bool = True):
    """The ``tokenizers.Tokenizer`` (normalizer, pre-tokenizer, WordLevel model) of a vocabulary ``itos``."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

    if list(itos[:2]) != [PAD, UNK]:
        raise ValueError(f"vocabulary must start with [{PAD!r}, {UNK!r}], got {list(itos[:2])}")
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(itos)}, unk_token=UNK))
    norms = []
    if tokenizer == "regex":  # regex_tokenize's replacements (wordpunct has none)
        norms += [normalizers.Replace("\u2019", "'"), normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
    if lowercase:
        norms += [normalizers.Replace(Regex(final_sigma_pattern()), "\u03c2"), normalizers.Lowercase()]
    if norms:
        tok.normalizer = normalizers.Sequence(norms)
    space = "[" + _ranges("space") + "]+"
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(space), behavior="removed"),
        pre_tokenizers.Split(Regex(token_pattern(tokenizer)), behavior="isolated"),
    ])
    return tok


def build_tokenizer(itos: Sequence[str], *, tokenizer: str = "regex", lowercase: bool = True,
                    max_len: int | None = None):
    """A ``PreTrainedTokenizerFast`` giving the repo pipeline's ids for vocabulary ``itos`` (``<pad>`` = 0,
    ``<unk>`` = 1), truncating to ``max_len`` tokens with ``truncation=True``."""
    from transformers import PreTrainedTokenizerFast

    kw = {"model_max_length": max_len} if max_len else {}
    return PreTrainedTokenizerFast(tokenizer_object=build_backend(itos, tokenizer=tokenizer, lowercase=lowercase),
                                   unk_token=UNK, pad_token=PAD, padding_side="right", truncation_side="right",
                                   model_input_names=["input_ids", "attention_mask"], **kw)
