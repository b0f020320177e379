"""Degenerate data files stop before training with one ValueError naming the file, the counts and the fix.

One test per case: each writes a tiny bad file under ``tmp_path`` and calls the loader the task calls
(``load_classification(cfg.data)``, ``load_summarization(...)``, ``load_mind_rec(cfg.data)``).
"""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fastformer.data import classification
from fastformer.data.classification import load_classification, rows_needed, split_sizes
from fastformer.data.mind_rec import load_mind_rec
from fastformer.data.summarization import docs_needed, load_summarization


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _text_cfg(tmp_path: Path, name: str, **kw) -> dict:
    return {"name": "t", "loader": "text", "root": str(tmp_path), "path": name, "cache_dir": str(tmp_path / "cache"),
            "text_field": "text", "label_field": "label", **kw}


def _rows(labels: str) -> list[dict]:
    return [{"text": f"review number {i} was fine", "label": lab} for i, lab in enumerate(labels)]


# ---- classification ------------------------------------------------------------------------------------------
def test_rows_needed_is_the_fewest_rows_split_sizes_fills():
    for sizes in ([40000, 5000, 5000], [40, 10, 10], [1, 1, 1], [3, 7, 2], [10, 1, 1]):
        need = rows_needed(sizes)
        assert min(split_sizes(need, sizes)[0]) >= 1 and min(split_sizes(need - 1, sizes)[0]) == 0
    assert rows_needed([2, 0, 1]) is None


def test_classification_one_valid_row(tmp_path):
    path = _jsonl(tmp_path / "one.jsonl", _rows("a"))
    with pytest.raises(ValueError, match=re.escape(f"{path}: only 1 valid row, but data.split_sizes=[40000, 5000, "
                                                   f"5000] needs at least 10 rows") + r".*train=1, val=0, test=0"):
        load_classification(_text_cfg(tmp_path, "one.jsonl"))


def test_classification_few_rows_names_skipped_rows_and_a_fix(tmp_path):
    path = tmp_path / "few.csv"
    path.write_text("text,label\ngood one,a\ngood two,b\ngood three,a\ngood four,b\nno label,\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}: only 4 valid rows (1 more skipped as bad") +
                       r".*needs at least 10 rows.*data\.split_sizes=\[2, 1, 1\]"):
        load_classification(_text_cfg(tmp_path, "few.csv", max_skip_fraction=0.5))


def test_classification_all_rows_one_label(tmp_path):
    path = _jsonl(tmp_path / "same.jsonl", _rows("aaaaaaaaaaaa"))
    with pytest.raises(ValueError, match=re.escape(f"{path}: all 12 valid rows have the same label 'a' "
                                                   f"(data.label_field='label')") + ".*>= 2 classes"):
        load_classification(_text_cfg(tmp_path, "same.jsonl"))


def test_classification_training_split_with_one_class(tmp_path):
    path = _jsonl(tmp_path / "two.jsonl", _rows("abaa"))  # with seed 0 the 2-row training split draws both a rows
    with pytest.raises(ValueError, match=re.escape(f"{path}: the training split (2 rows) holds only label 'a' of the "
                                                   f"2 labels found")):
        load_classification(_text_cfg(tmp_path, "two.jsonl", split_sizes=[2, 1, 1], seed=0))


def test_classification_zero_eval_cap_and_zero_split_size(tmp_path):
    path = _jsonl(tmp_path / "ok.jsonl", _rows("ab" * 10))
    with pytest.raises(ValueError, match=re.escape(f"{path}: data.max_eval=0 leaves val/test empty")):
        load_classification(_text_cfg(tmp_path, "ok.jsonl", max_eval=0))
    with pytest.raises(ValueError, match=re.escape(f"{path}: data.split_sizes=[10, 0, 2] gives val 0 rows")):
        load_classification(_text_cfg(tmp_path, "ok.jsonl", split_sizes=[10, 0, 2]))


def test_classification_amazon_all_one_rating(tmp_path):
    path = tmp_path / "amazon" / "reviews_Electronics_5.json.gz"
    path.parent.mkdir(parents=True)
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps({"overall": 5.0, "reviewText": f"great product {i}"}) + "\n" for i in range(20))
    cfg = {"name": "amazon", "loader": "amazon", "root": str(tmp_path), "cache_dir": str(tmp_path / "cache"),
           "download": False, "split_sizes": [16, 2, 2]}
    with pytest.raises(ValueError, match=re.escape(f"{path}: all 20 valid rows have the same label '5' "
                                                   f"(label field 'overall')")):
        load_classification(cfg)


def test_classification_check_also_runs_on_a_cache_written_without_it(tmp_path, monkeypatch):
    """An encoded cache written before these checks existed (the run then crashed in training) still gets the line."""
    _jsonl(tmp_path / "same.jsonl", _rows("a" * 12))
    monkeypatch.setattr(classification, "check_splits", lambda *a, **k: None)
    assert load_classification(_text_cfg(tmp_path, "same.jsonl", split_sizes=[8, 2, 2])).n_classes == 1
    monkeypatch.undo()
    with pytest.raises(ValueError, match="all 12 valid rows have the same label 'a'"):
        load_classification(_text_cfg(tmp_path, "same.jsonl", split_sizes=[8, 2, 2]))


# ---- summarization -------------------------------------------------------------------------------------------
def _docs(n: int, *, target: str = "A summary.") -> list[dict]:
    return [{"article": f"Document {i} has a few words.", "highlights": target} for i in range(n)]


def test_docs_needed_matches_seeded_split():
    from fastformer.data.summarization import Example, seeded_split
    for val, test in ((0.1, 0.1), (0.5, 0.45), (0.1, 0.0), (0.0, 0.3)):
        need = docs_needed(val, test)
        sizes = [{k: len(v) for k, v in seeded_split([Example("s", "t")] * n, val_fraction=val, test_fraction=test,
                                                     seed=0).items()} for n in (need - 1, need)]
        wanted = ["train"] + [k for k, f in (("validation", val), ("test", test)) if f > 0]
        assert min(sizes[0][k] for k in wanted) == 0 and min(sizes[1][k] for k in wanted) == 1
    assert docs_needed(0.1, 0.1) == 3 and docs_needed(0.5, 0.45) == 5


def test_summarization_too_few_documents_for_the_fractions(tmp_path):
    path = _jsonl(tmp_path / "cnn_dailymail" / "data.jsonl", _docs(2))
    with pytest.raises(ValueError, match=re.escape(f"{path}: only 2 usable documents (0 of 2 records dropped") +
                       r".*data\.val_fraction=0\.1, data\.test_fraction=0\.1 need at least 3 documents"):
        load_summarization(root=tmp_path, subdir="cnn_dailymail")


def test_summarization_all_targets_empty(tmp_path):
    path = _jsonl(tmp_path / "cnn_dailymail" / "data.jsonl", _docs(4, target=""))
    with pytest.raises(ValueError, match=re.escape(f"{path}: only 0 usable documents (4 of 4 records dropped for "
                                                   f"an empty source or target)")):
        load_summarization(root=tmp_path, subdir="cnn_dailymail")


def test_summarization_validation_file_with_only_empty_documents(tmp_path):
    folder = tmp_path / "cnn_dailymail"
    _jsonl(folder / "train.jsonl", _docs(5))
    _jsonl(folder / "test.jsonl", _docs(2))
    path = _jsonl(folder / "validation.jsonl", [{"article": "", "highlights": "x."}] * 3)
    with pytest.raises(ValueError, match=re.escape(f"{path}: the file has 0 usable validation documents (all 3 "
                                                   f"records have an empty source or target)")):
        load_summarization(root=tmp_path, subdir="cnn_dailymail")


def test_summarization_empty_csv_file(tmp_path):
    path = tmp_path / "cnn_dailymail" / "train.csv"
    path.parent.mkdir()
    path.write_text("")
    with pytest.raises(ValueError, match=re.escape(f"{path}: the file holds no records")):
        load_summarization(root=tmp_path, subdir="cnn_dailymail")


def test_summarization_zero_fraction_and_zero_cap(tmp_path):
    path = _jsonl(tmp_path / "cnn_dailymail" / "data.jsonl", _docs(10))
    with pytest.raises(ValueError, match=re.escape(f"{path}: data.val_fraction=0 leaves validation empty")):
        load_summarization(root=tmp_path, subdir="cnn_dailymail", val_fraction=0.0)
    with pytest.raises(ValueError, match=re.escape(f"{path.parent}: data.max_eval=0 leaves validation empty")):
        load_summarization(root=tmp_path, subdir="cnn_dailymail", limit={"validation": 0, "test": 0})


# ---- MIND news recommendation ----------------------------------------------------------------------------------
NEWS = "".join(f"N{i}\tsports\tnfl\tTitle number {i}\tAbstract {i}\t\t[]\t[]\n" for i in range(6))
BEHAVIORS = "".join(f"{i}\tU{i}\t11/11/2019 9:05:58 AM\tN0 N1\tN2-1 N3-0 N4-0\n" for i in range(1, 5))


def _mind(tmp_path: Path, *, train_news: str = NEWS, train_beh: str = BEHAVIORS, dev_beh: str = BEHAVIORS) -> Path:
    for split, news, beh in (("train", train_news, train_beh), ("dev", NEWS, dev_beh)):
        folder = tmp_path / f"MINDsmall_{split}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "news.tsv").write_text(news)
        (folder / "behaviors.tsv").write_text(beh)
    return tmp_path


def _mind_cfg(root: Path, **kw):
    return OmegaConf.create({"name": "mind_rec", "root": str(root), "version": "small", "train_split": "train",
                             "val_split": "dev", "test_split": "dev", "predict_split": None, "max_title_len": 16,
                             "max_history": 10, "tokenizer": "regex", "max_train_impressions": None,
                             "max_eval_impressions": None, "seed": 0, **kw})


def test_mind_fixture_itself_loads(tmp_path):
    data = load_mind_rec(_mind_cfg(_mind(tmp_path)))
    assert len(data.impressions["train"]) == 4 and len(data.impressions["test"]) == 4


def test_mind_empty_behaviors_file(tmp_path):
    root = _mind(tmp_path, train_beh="")
    with pytest.raises(ValueError, match=re.escape(f"{root / 'MINDsmall_train'}/behaviors.tsv: 0 impressions")):
        load_mind_rec(_mind_cfg(root))


def test_mind_empty_news_file(tmp_path):
    root = _mind(tmp_path, train_news="")
    with pytest.raises(ValueError, match=re.escape(f"{root / 'MINDsmall_train'}/news.tsv: 0 news rows")):
        load_mind_rec(_mind_cfg(root))


def test_mind_news_file_of_another_split(tmp_path):
    other = "".join(f"N{100 + i}\tsports\tnfl\tOther title {i}\t\t\t[]\t[]\n" for i in range(3))
    root = _mind(tmp_path, train_news=other)
    with pytest.raises(ValueError, match=re.escape(f"{root / 'MINDsmall_train'}/behaviors.tsv: all 4 impressions "
                                                   f"dropped: none of their candidate news ids is in")):
        load_mind_rec(_mind_cfg(root))


def test_mind_training_split_without_clicks(tmp_path):
    root = _mind(tmp_path, train_beh=BEHAVIORS.replace("-1", "-0"))
    with pytest.raises(ValueError, match=re.escape(f"{root / 'MINDsmall_train'}/behaviors.tsv: none of the 4 "
                                                   f"impressions of the train split") + r".*\(0 clicks among 12"):
        load_mind_rec(_mind_cfg(root))


def test_mind_eval_split_without_a_non_click(tmp_path):
    root = _mind(tmp_path, dev_beh=BEHAVIORS.replace("-0", "-1"))
    with pytest.raises(ValueError, match=re.escape(f"{root / 'MINDsmall_dev'}/behaviors.tsv: none of the 4 "
                                                   f"impressions of the val split") + r".*\(12 clicks among 12.*AUC"):
        load_mind_rec(_mind_cfg(root))


def test_mind_unlabelled_eval_split_and_zero_cap(tmp_path):
    root = _mind(tmp_path, dev_beh=BEHAVIORS.replace("-1", "").replace("-0", ""))
    with pytest.raises(ValueError, match=re.escape(f"{root / 'MINDsmall_dev'}/behaviors.tsv: the val split "
                                                   f"(MINDsmall_dev, data.val_split) is unlabelled")):
        load_mind_rec(_mind_cfg(root))
    root = _mind(tmp_path / "b")
    with pytest.raises(ValueError, match=re.escape("data.max_eval_impressions=0 leaves the val split")):
        load_mind_rec(_mind_cfg(root, max_eval_impressions=0))
