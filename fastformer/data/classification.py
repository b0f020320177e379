"""Text-classification data (paper Table 1): load -> seeded split -> vocabulary -> token ids, all cached.

    ds = load_classification(cfg.data)          # DictConfig or dict; keys documented in configs/data/*.yaml
    ds.train[i] == (token_ids: list[int], label: int); ds.vocab, ds.n_classes, ds.label_names, ds.info
    ds.embedding_init(d_model)                  # (len(vocab), d_model) GloVe table, or None without glove_path

Pipeline: resolve the source file(s) under ``root`` (downloading the official file when missing and allowed) ->
read rows in their original format (:mod:`fastformer.data.classification_formats`) -> map labels (unknown ones
counted + skipped) -> seeded permutation split with the paper's Table 1 sizes when the data has enough rows, else
the same proportions (logged) -> ``max_train``/``max_eval`` caps take prefixes of the split, so a quick run sees a
subset of the full run's rows -> vocabulary from the (capped) training split -> token ids. Split indices and the
encoded arrays are cached under ``cache_dir`` (default ``<root>/.cache``, or a user cache dir when the root is
read-only), keyed by the source files' size/mtime and every option that changes them, so all mixers see identical
splits.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastformer.data import classification_formats as readers
from fastformer.data.classification_sources import read_rows, resolve_sources, under
from fastformer.data.download import DataUnavailableError, default_cache_dir
from fastformer.data.schema import DataOptions, drop_defaults  # DataOptions: also importable from here, as before
from fastformer.data.text import Vocab, get_tokenizer, glove_init, tokenize_all
from fastformer.errors import UserInputError
from fastformer.utils import atomic_path, atomic_torch_save, atomic_write_text

log = logging.getLogger(__name__)
_FORMAT_VERSION = 1  # bump when the cached arrays' meaning changes


class TokenDataset(torch.utils.data.Dataset):
    """Flat int32 token array + offsets; item i -> (token ids truncated to ``max_len``, label)."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray, max_len: int | None):
        self.ids, self.offsets, self.labels, self.max_len = ids, offsets, labels, max_len

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: list[int]) -> list[tuple[list[int], int, int]]:
        """A DataLoader's batch fetch: the items with their index, so that :func:`pad_collate` can hand the batch's
        dataset positions to the task (per-item test records stay in dataset order under any evaluation order)."""
        return [(*self[i], int(i)) for i in indices]

    @property
    def lengths(self) -> np.ndarray:
        """Tokens of each item as the collate pads it (truncated to ``max_len``; an empty text is one <unk>): what
        length-grouped batching and evaluation sort by (fastformer/train/sampling.py)."""
        n = np.diff(self.offsets)
        if self.max_len is not None:
            n = np.minimum(n, self.max_len)
        return np.maximum(n, 1)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        if self.max_len is not None:
            end = min(end, start + self.max_len)
        return self.ids[start:end].tolist(), int(self.labels[i])


def pad_collate(batch: list[tuple], pad_id: int = Vocab.pad_id) -> dict[str, torch.Tensor]:
    """[(ids, label)] -> {"input_ids": (B, L) long, "attention_mask": (B, L) bool, "labels": (B,) long}; items
    ``(ids, label, index)`` (a DataLoader's fetch of a :class:`TokenDataset`) add ``"index": (B,) long``.

    An empty text becomes one <unk> token, so every row has at least one real position.
    """
    rows = [list(item[0]) or [Vocab.unk_id] for item in batch]
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)     # (B, L)
    mask = torch.zeros((len(batch), width), dtype=torch.bool)                # (B, L)
    for row, ids in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[row, : len(ids)] = True
    out = {"input_ids": input_ids, "attention_mask": mask,
           "labels": torch.tensor([item[1] for item in batch], dtype=torch.long)}
    if batch and len(batch[0]) > 2:
        out["index"] = torch.tensor([item[2] for item in batch], dtype=torch.long)
    return out


@dataclass
class ClassificationData:
    train: TokenDataset
    val: TokenDataset
    test: TokenDataset
    vocab: Vocab
    label_names: list[str]
    info: dict
    options: DataOptions
    cache_dir: Path

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    def embedding_init(self, d_model: int) -> torch.Tensor | None:
        """(len(vocab), d_model) GloVe-initialised table (cached), or None when ``glove_path`` is null."""
        o = self.options
        if not o.glove_path:
            return None
        glove = under(o.root, o.glove_path)
        if not glove.exists():
            raise DataUnavailableError(f"data.glove_path {glove} not found; download glove.6B.zip from "
                                       f"https://nlp.stanford.edu/projects/glove/ and unzip it there, or set null")
        key = _hash([self.vocab.itos, readers.file_key(glove), d_model, o.glove_projection, o.seed])
        cache = self.cache_dir / "glove" / f"{key}.pt"
        if cache.exists():
            saved = torch.load(cache)
        else:
            table, stats = glove_init(self.vocab, glove, d_model, projection=o.glove_projection, seed=o.seed)
            saved = {"table": table, "stats": stats}
            atomic_torch_save(saved, cache)  # parallel runs of a sweep may build it at the same time
        self.info["glove"] = saved["stats"]
        return saved["table"]


    def cached_json(self, name: str, compute) -> dict:
        """``compute()`` (a JSON-able dict derived from these splits, e.g. non-neural reference scores) once per
        encoded dataset and ``max_len``: cached under ``cache_dir/derived`` and read back by every later run."""
        path = self.cache_dir / "derived" / f"{Path(self.info['cache']).stem}-len{self.options.max_len}-{name}.json"
        if path.exists():
            return json.loads(path.read_text())
        out = compute()
        atomic_write_text(path, json.dumps(out))  # parallel runs of a sweep may compute it at the same time
        return out


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]




def _map_labels(rows, label_names: list[str] | None) -> tuple[list[int], list[int], list[str]]:
    """(kept row indices, label ids, label names); labels outside a fixed ``label_names`` are counted + skipped."""
    norm = [_canon(lab) for lab in rows.labels]
    if label_names is None:
        uniq = set(norm)
        label_names = sorted(uniq, key=lambda x: (0, float(x), x) if _is_num(x) else (1, 0.0, x))
    names = [_canon(str(n)) for n in label_names]
    index = {n: i for i, n in enumerate(names)}
    keep = [i for i, lab in enumerate(norm) if lab in index]
    rows.skipped["unknown_label"] += len(norm) - len(keep)
    return keep, [index[norm[i]] for i in keep], names


def _is_num(x: str) -> bool:
    try:
        float(x)
        return True
    except ValueError:
        return False


def _canon(label: str) -> str:
    """``"4.0"`` -> ``"4"`` so numeric labels from JSON/CSV compare equal; other strings unchanged."""
    return str(int(float(label))) if _is_num(label) and float(label).is_integer() else label


def split_sizes(n: int, sizes: list[int]) -> tuple[list[int], str]:
    """Paper sizes when ``n`` rows suffice, else the same proportions of ``n`` (train gets the remainder)."""
    if len(sizes) != 3 or min(sizes) < 0 or sum(sizes) == 0:
        raise UserInputError(f"data.split_sizes={sizes} must be three non-negative counts [train, val, test]")
    if sum(sizes) <= n:
        return list(sizes), f"fixed sizes {list(sizes)} (paper Table 1) from {n} rows"
    val, test = n * sizes[1] // sum(sizes), n * sizes[2] // sum(sizes)
    return [n - val - test, val, test], f"proportional to {list(sizes)}: only {n} rows available"


def rows_needed(sizes: list[int]) -> int | None:
    """Fewest rows for which :func:`split_sizes` gives train, val and test >= 1 row each; None if a size is 0."""
    if len(sizes) != 3 or min(sizes) < 1:
        return None
    total = sum(sizes)
    return max(3, -(-total // sizes[1]), -(-total // sizes[2]))


def check_splits(o: DataOptions, sources: list[Path], n_rows: int, labels: dict[str, Any], names: list[str],
                 label_field: str | None, skipped: dict | None = None) -> None:
    """One actionable UserInputError, before any training, when a split is empty or the training split has < 2 classes.

    ``labels``: split -> that split's label ids (after the ``max_train``/``max_eval`` caps); ``n_rows``: valid rows.
    """
    where = ", ".join(map(str, sources))
    sizes = {k: len(v) for k, v in labels.items()}
    got = ", ".join(f"{k}={v}" for k, v in sizes.items())
    empty = [k for k, v in sizes.items() if v < 1]
    if empty:
        caps = {"train": ("max_train", o.max_train), "val": ("max_eval", o.max_eval), "test": ("max_eval", o.max_eval)}
        zero_caps = sorted({f"data.{key}={cap}" for k in empty for key, cap in [caps[k]]
                            if cap is not None and cap < 1})
        if zero_caps:
            raise UserInputError(f"{where}: {' and '.join(zero_caps)} leaves {'/'.join(empty)} empty ({got}); "
                                 f"every split "
                             f"needs >= 1 row: set it >= 1, or null for no cap")
        need = rows_needed(list(o.split_sizes))
        if need is None:
            raise UserInputError(f"{where}: data.split_sizes={list(o.split_sizes)} gives {'/'.join(empty)} 0 rows "
                                 f"({got}); "
                             f"every split needs >= 1 row: set each of [train, val, test] >= 1")
        bad = sum((skipped or {}).values())
        fix = (f"add rows to the file, or set data.split_sizes=[{n_rows - 2}, 1, 1]" if n_rows >= 3 else
               "add rows to the file (3 valid rows at the very least, one per split)")
        raise UserInputError(f"{where}: only {n_rows} valid row{'s' * (n_rows != 1)}"
                         f"{f' ({bad} more skipped as bad: {skipped})' if bad else ''}, but data.split_sizes="
                         f"{list(o.split_sizes)} needs at least {need} rows for train/val/test to get >= 1 row each "
                         f"(got {got}). Fix: {fix}")
    present = sorted({int(y) for y in labels["train"]})
    if len(present) < 2:
        overall = sorted({int(y) for ys in labels.values() for y in ys})
        shown = names[present[0]]
        field = f"data.label_field={o.label_field!r}" if o.label_field else f"label field {label_field!r}"
        if len(overall) < 2:
            raise UserInputError(f"{where}: all {n_rows} valid rows have the same label {shown!r} ({field}); "
                             f"classification needs >= 2 classes in the training split. Fix: point data.label_field "
                             f"at the label column, or use a file with >= 2 distinct labels")
        raise UserInputError(f"{where}: the training split ({sizes['train']} rows) holds only label {shown!r} of the "
                         f"{len(overall)} labels found ({field}); classification needs >= 2 classes in the training "
                         f"split. Fix: add rows to the file (or change data.seed / data.split_sizes)")


def check_skipped(o: DataOptions, sources: list[Path], n_valid: int, skipped: dict[str, int]) -> None:
    """Stop (one line: counts, reasons, the fix) when the rows dropped as bad exceed ``data.max_skip_fraction`` of all
    rows read. Selections are not bad data and do not count: rows outside an explicit ``data.label_names``
    (``unknown_label``; without it they occur only outside the fixed label sets, Amazon 1-5 and aclImdb ratings) and
    MIND news without a body in ``data.body_path`` / ``body_column`` (``missing_body``: body crawls cover a subset)."""
    bad = {k: v for k, v in skipped.items() if k != "missing_body" and not (k == "unknown_label" and o.label_names)}
    n_bad, total = sum(bad.values()), n_valid + sum(skipped.values())
    if not total or n_bad <= o.max_skip_fraction * total:
        return
    where = ", ".join(map(str, sources))
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(bad.items(), key=lambda kv: -kv[1]))
    top = max(bad, key=bad.get)
    if top == "undecodable":
        held = readers.sniff(sources[0], o.encoding) if sources[0].is_file() else "files"
        fix = (f"the text is not {o.encoding} (the file holds {held}): set data.encoding to its encoding, e.g. "
               f"data.encoding=latin-1 or cp1252")
    elif top == "malformed":
        fix = ("lines are not one JSON object / TSV record each"
               + (f" (the file holds {readers.sniff(sources[0], o.encoding)})" if sources[0].is_file() else "")
               + ": fix the file, or set data.format to its format")
    elif top in ("empty_text", "missing_label"):
        fix = (f"{bad[top]} record{'s' * (bad[top] != 1)} {'have' if bad[top] != 1 else 'has'} no "
               f"{'text' if top == 'empty_text' else 'label'}: check data.text_field / data.label_field")
    else:
        fix = f"check the file ({top})"
    raise UserInputError(f"{where}: {n_bad} of {total} rows ({100 * n_bad / total:.1f}%) would be dropped as bad "
                         f"({reasons}), more than data.max_skip_fraction={o.max_skip_fraction}; {fix}, or raise "
                         f"data.max_skip_fraction to accept the loss")


def _splits(n: int, labels: list[int], o: DataOptions, cache: Path) -> tuple[dict[str, list[int]], str]:
    """Seeded permutation split of ``n`` rows, cached as JSON (re-made if the cached row fingerprint differs)."""
    fingerprint = _hash([n, labels])
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("fingerprint") == fingerprint:
            return saved["splits"], saved["how"]
        log.warning("%s: rows changed since the split was cached; re-splitting", cache)
    sizes, how = split_sizes(n, list(o.split_sizes))
    if "proportional" in how:
        log.warning("%s: %s", o.name, how)
    perm = np.random.default_rng(o.seed).permutation(n).tolist()
    bounds = np.cumsum([0, *sizes]).tolist()
    splits = {name: perm[bounds[k]:bounds[k + 1]] for k, name in enumerate(("train", "val", "test"))}
    atomic_write_text(cache, json.dumps({"fingerprint": fingerprint, "how": how, "seed": o.seed, "splits": splits}))
    return splits, how


def _pack(token_ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged ids -> (flat int32 (T,), offsets int64 (N + 1,))."""
    offsets = np.zeros(len(token_ids) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in token_ids], out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(token_ids), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


def _rows_and_splits(o: DataOptions, sources: list[Path], cache_dir: Path):
    """Rows, kept row indices, their label ids, label names, the (capped) split -> positions in ``keep``, how it was
    split, the info fields of :func:`read_rows` and the skipped-row counts: everything before tokenisation."""
    rows, fixed_names, used = read_rows(o, sources, cache_dir)
    keep, y, names = _map_labels(rows, fixed_names)
    skipped = {k: v for k, v in sorted(rows.skipped.items()) if v}
    if skipped:
        log.warning("%s: skipped %d bad rows %s in %s", o.name, sum(skipped.values()), skipped, rows.sources)
    check_skipped(o, sources, len(keep), skipped)
    if not keep:
        raise UserInputError(f"{', '.join(map(str, sources))}: no valid rows (skipped: {skipped}); check the file and "
                         f"data.text_field/label_field")
    split_key = _hash([o.loader, [str(s) for s in sources], rows.sources, used.get("categories"), o.label_mode,
                       o.format, o.body_path, o.body_column, o.text_field, o.label_field, o.label_names,
                       o.use_summary, o.seed, list(o.split_sizes)])
    splits, how = _splits(len(keep), y, o, cache_dir / "splits" / f"{o.name}-{split_key}.json")
    caps = {"train": o.max_train, "val": o.max_eval, "test": o.max_eval}
    splits = {k: v if caps[k] is None else v[: caps[k]] for k, v in splits.items()}
    check_splits(o, sources, len(keep), {k: [y[i] for i in idx] for k, idx in splits.items()}, names,
                 used.get("label_field"), skipped)
    return rows, keep, y, names, splits, how, used, skipped


def split_texts(cfg: Any, split: str = "test") -> tuple[list[str], list[int]]:
    """The raw texts and label ids of ``split``, in dataset order (``ds.<split>[i]`` encodes ``texts[i]``): what a
    tokenizer exported with a run (scripts/export_hf.py) is evaluated on."""
    o = DataOptions.from_cfg(cfg)
    sources = resolve_sources(o)
    cache_dir = Path(o.cache_dir) if o.cache_dir else default_cache_dir(Path(o.root))
    rows, keep, y, _, splits, *_ = _rows_and_splits(o, sources, cache_dir)
    if split not in splits:
        raise KeyError(f"no split {split!r}; splits: {sorted(splits)}")
    return [rows.texts[keep[i]] for i in splits[split]], [y[i] for i in splits[split]]


def _build(o: DataOptions, sources: list[Path], cache_dir: Path) -> tuple[dict, list[str], list[str], dict]:
    rows, keep, y, names, splits, how, used, skipped = _rows_and_splits(o, sources, cache_dir)
    tok = get_tokenizer(o.tokenizer, lower=o.lowercase)
    order = [(k, i) for k, idx in splits.items() for i in idx]
    flat_tokens = iter(tokenize_all([rows.texts[keep[i]] for _, i in order], tok, workers=o.num_workers))
    tokens = {k: [next(flat_tokens) for _ in idx] for k, idx in splits.items()}
    vocab = Vocab.build(tokens["train"], max_size=o.vocab_size, min_freq=o.min_freq)
    arrays = {}
    for k, idx in splits.items():
        flat, offsets = _pack([vocab.encode(t) for t in tokens[k]])
        arrays[k] = (flat, offsets, np.asarray([y[i] for i in idx], dtype=np.int64))
    lens = np.diff(arrays["train"][1])
    info = {**used, "dataset": o.name, "loader": o.loader, "source": [str(s) for s in sources],
            "n_classes": len(names), "label_names": names, "available_rows": len(keep), "skipped": skipped,
            "split": how + (f"; capped by max_train={o.max_train}, max_eval={o.max_eval}"
                            if o.max_train or o.max_eval else ""),
            "sizes": {k: len(v) for k, v in splits.items()}, "seed": o.seed, "tokenizer": o.tokenizer,
            "vocab_size": len(vocab), "avg_len_train": round(float(lens.mean()), 1) if len(lens) else 0.0}
    return arrays, vocab.itos, names, info


def load_classification(cfg: Any) -> ClassificationData:
    """Load (or read back from cache) one classification dataset described by the ``data`` config node."""
    t0 = time.perf_counter()
    o = DataOptions.from_cfg(cfg)
    readers.check_encoding(o.encoding)
    if not isinstance(o.max_skip_fraction, (int, float)) or not 0 <= o.max_skip_fraction <= 1:
        raise UserInputError(f"data.max_skip_fraction={o.max_skip_fraction!r} must be a number in [0, 1] (the share "
                             f"of rows a load may drop as bad; default 0.01)")
    sources = resolve_sources(o)
    cache_dir = Path(o.cache_dir) if o.cache_dir else default_cache_dir(Path(o.root))
    unused = {"root", "max_len", "glove_path", "glove_projection", "cache_dir", "num_workers", "download",
              "max_skip_fraction"}
    key = _hash([{k: v for k, v in drop_defaults(dataclasses.asdict(o)).items() if k not in unused},
                 [readers.file_key(s) for s in sources], _FORMAT_VERSION])
    cache = cache_dir / "encoded" / f"{o.name}-{key}.npz"
    hit = cache.exists()
    if hit:
        with np.load(cache, allow_pickle=False) as z:
            arrays = {k: (z[f"{k}_ids"], z[f"{k}_offsets"], z[f"{k}_labels"]) for k in ("train", "val", "test")}
            meta = json.loads(str(z["meta"]))
        itos, names, info = meta["itos"], meta["label_names"], meta["info"]
        check_splits(o, sources, info["available_rows"], {k: arrays[k][2] for k in arrays}, names,
                     info.get("label_field"), info.get("skipped"))  # a cache written before these checks existed
    else:
        arrays, itos, names, info = _build(o, sources, cache_dir)
        with atomic_path(cache, suffix=".npz") as tmp:  # .npz: np.savez would append it to any other name
            np.savez(tmp, meta=np.array(json.dumps({"itos": itos, "label_names": names, "info": info})),
                     **{f"{k}_{part}": a for k, arr in arrays.items()
                        for part, a in zip(("ids", "offsets", "labels"), arr)})
    info = {**info, "max_len": o.max_len, "cache": str(cache), "cached": hit,
            "load_s": round(time.perf_counter() - t0, 2)}
    data = ClassificationData(*(TokenDataset(*arrays[k], o.max_len) for k in ("train", "val", "test")),
                              vocab=Vocab(itos), label_names=names, info=info, options=o, cache_dir=cache_dir)
    log.info("%s: %s | sizes %s | %d classes | vocab %d | %.1fs", o.name, info["data_used"], info["sizes"],
             data.n_classes, len(data.vocab), info["load_s"])
    return data
