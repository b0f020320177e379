"""Classification data layer: loaders per original format, splits, caches, bad rows, downloads, tokeniser, GloVe."""
from __future__ import annotations

import gzip
import json
import logging
import os
import pickle
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from fastformer.data import classification_formats, classification_sources, download, fixtures
from fastformer.data.classification import load_classification, pad_collate, split_sizes
from fastformer.data.text import Vocab, get_tokenizer, glove_init, regex_tokenize, tokenize_all
from fastformer.errors import UserInputError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> dict:
    return fixtures.write_all_fixtures(tmp_path_factory.mktemp("fixtures"), n_per_class=8)


def cfg(root: Path, cache: Path, name: str, loader: str, **kw) -> dict:
    return {"name": name, "loader": loader, "root": str(root), "cache_dir": str(cache), "split_sizes": [40, 10, 10],
            **kw}


def texts(ds, split: str = "train") -> list[tuple[str, int]]:
    return [(" ".join(ds.vocab.decode(ids)), y) for ids, y in getattr(ds, split)]


# ---- tokeniser / vocabulary ------------------------------------------------------------------------------------
def test_regex_tokenizer_matches_word_tokenize_conventions():
    assert regex_tokenize("I don't think it's U.S. e-mail... Can't stop!") == [
        "i", "do", "n't", "think", "it", "'s", "u.s", ".", "e-mail", "...", "ca", "n't", "stop", "!"]
    assert pickle.loads(pickle.dumps(get_tokenizer("regex")))("Hi!") == ["hi", "!"]  # picklable for workers
    docs = [f"Doc {i}: it's fine." for i in range(50)]
    assert tokenize_all(docs, get_tokenizer(), workers=2, chunk=7) == [regex_tokenize(d) for d in docs]
    with pytest.raises(ValueError, match="data.tokenizer"):
        get_tokenizer("bpe")


@pytest.mark.slow  # importing nltk alone takes several seconds
def test_nltk_tokenizers():
    assert get_tokenizer("treebank")("Hello, World") == ["hello", ",", "world"]
    assert get_tokenizer("wordpunct", lower=False)("A-b") == ["A", "-", "b"]


def test_vocab_order_caps_and_roundtrip(tmp_path):
    v = Vocab.build([["b", "a", "b", "c"], ["b", "a", "d"]], min_freq=2)
    assert v.itos == ["<pad>", "<unk>", "b", "a"] and (v.pad_id, v.unk_id) == (0, 1)
    assert v.encode(["a", "zzz"]) == [3, 1] and len(Vocab.build([["x", "y", "z"]], max_size=3)) == 3
    v.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json").itos == v.itos


# ---- loaders per format ----------------------------------------------------------------------------------------
def test_amazon_category_selection_and_fallback(fx, tmp_path, caplog):
    small = load_classification(cfg(fx["root"], tmp_path, "amazon", "amazon", categories=["Electronics"],
                                    split_sizes=[20, 5, 5]))
    assert small.n_classes == 5 and small.label_names == ["1", "2", "3", "4", "5"]
    assert small.info["categories"] == ["Electronics_5"] and small.info["available_rows"] == 40
    with caplog.at_level(logging.WARNING):
        big = load_classification(cfg(fx["root"], tmp_path, "amazon", "amazon", categories=["Electronics"]))
    assert "falling back to all categories" in caplog.text
    assert big.info["categories"] == ["Books_5", "Electronics_5"] and big.info["available_rows"] == 80
    assert "only 40 rows" in big.info["data_used"]


def test_amazon_official_file_implies_category(tmp_path):
    path = fixtures.write_amazon_official(tmp_path / "d", n_per_class=6)
    assert classification_formats.amazon_category_from_name(path) == "Electronics_5"
    ds = load_classification(cfg(tmp_path / "d", tmp_path / "c", "amazon", "amazon", categories=["Electronics"],
                                 use_summary=True, split_sizes=[20, 5, 5]))
    assert ds.info["source"] == [str(path)] and ds.info["categories"] == ["Electronics_5"]
    assert ds.info["text_field"] == "summary . reviewText" and len(ds.train) == 20


def test_imdb_tarball_and_folder_agree(fx, tmp_path, monkeypatch):
    a = load_classification(cfg(fx["root"], tmp_path / "a", "imdb", "imdb", path="imdb/aclImdb_v1.tar.gz"))
    b = load_classification(cfg(fx["root"], tmp_path / "b", "imdb", "imdb"))  # default search: folder first
    assert b.info["source"] == [str(fx["imdb"])] and a.n_classes == b.n_classes == 8
    assert a.label_names == ["1", "2", "3", "4", "7", "8", "9", "10"]
    assert texts(a) == texts(b) and a.info["available_rows"] == 2 * 8 * 8
    assert "<br" not in " ".join(t for t, _ in texts(a)) and "stand-in for Diao" in a.info["data_used"]
    assert list((tmp_path / "a" / "parsed").glob("aclimdb-*.jsonl.gz"))
    binary = load_classification(cfg(fx["root"], tmp_path / "a", "imdb", "imdb", label_mode="binary"))
    assert binary.label_names == ["neg", "pos"]
    # second parse of the tarball comes from the parsed cache, never from the archive
    monkeypatch.setattr(classification_formats, "_iter_imdb_files", lambda p: pytest.fail("tarball re-read"))
    rows = classification_formats.read_aclimdb(fx["imdb_tarball"], cache_dir=tmp_path / "a")
    assert len(rows.texts) == 128


def test_imdb_diao_json_hook(tmp_path):
    recs = [{"user": f"u{i}", "movie": "m", "review": f"review number {i} fine", "rating": i % 10 + 1}
            for i in range(40)]
    (tmp_path / "imdb").mkdir()
    (tmp_path / "imdb" / "data.json").write_text(json.dumps(recs))
    ds = load_classification(cfg(tmp_path, tmp_path / "c", "imdb", "imdb", format="diao_json",
                                 split_sizes=[30, 5, 5]))
    assert ds.n_classes == 10 and ds.label_names[-1] == "10" and "Diao" in ds.info["data_used"]


def test_mind_folder_plus_zip_dedup_and_body(fx, tmp_path):
    ds = load_classification(cfg(fx["root"], tmp_path, "mind_topics", "mind_topics"))
    assert ds.n_classes == 4 and ds.info["available_rows"] == 2 * 4 * 8  # the shared news id counted once
    assert len(ds.info["source"]) == 2 and "title . abstract" in ds.info["text_field"]
    body = tmp_path / "bodies.tsv"
    # bodies for 3 sports (N0-N2) and 3 finance (N8-N10) news: any 4-row training split holds both classes
    body.write_text("N0\tthe full body of a sports story about a touchdown\nN1\tanother body text\n"
                    "N2\ta third sports body\nN8\tstocks body\nN9\tearnings body\nN10\tmarket body\n")
    with_body = load_classification(cfg(fx["root"], tmp_path, "mind_topics", "mind_topics", body_path=str(body),
                                        split_sizes=[4, 1, 1]))
    assert with_body.info["text_field"] == "body" and with_body.info["available_rows"] == 6
    assert with_body.info["skipped"]["missing_body"] == 58


def test_mind_root_level_layout_and_single_zip(tmp_path):
    fixtures.write_mind(tmp_path, n_per_class=5)
    for name in ("MINDsmall_train", "MINDsmall_dev.zip"):  # newsrec's <root>/MIND<version>_<split> layout
        (tmp_path / "mind" / name).rename(tmp_path / name)
    (tmp_path / "mind").rmdir()
    ds = load_classification(cfg(tmp_path, tmp_path / "c", "mind_topics", "mind_topics"))
    assert ds.info["available_rows"] == 40 and len(ds.info["source"]) == 2
    one = load_classification(cfg(tmp_path, tmp_path / "c", "mind_topics", "mind_topics", path="MINDsmall_dev.zip"))
    assert one.info["available_rows"] == 21 and one.n_classes == 4


def test_generic_jsonl_and_csv_agree(fx, tmp_path):
    a = load_classification(cfg(fx["root"], tmp_path, "t", "text", path="text/data.jsonl", text_field="text",
                                label_field="label"))
    b = load_classification(cfg(fx["root"], tmp_path, "t", "text", path="text/data.csv", text_field="text",
                                label_field="label"))
    assert a.label_names == b.label_names == ["negative", "neutral", "positive"] and texts(a) == texts(b)
    fixed = load_classification(cfg(fx["root"], tmp_path, "t", "text", path="text/data.jsonl", text_field="text",
                                    label_field="label", label_names=["positive", "negative"]))
    assert fixed.label_names == ["positive", "negative"] and fixed.info["skipped"] == {"unknown_label": 8}


def test_bad_rows_counted_and_empty_file_is_an_error(tmp_path, caplog):
    good = [json.dumps({"t": f"fine text {i}", "y": "a" if i % 2 else "b"}).encode() for i in range(12)]
    bad = [json.dumps({"t": "  ", "y": "a"}).encode(), json.dumps({"t": "no label"}).encode(), b"{not json",
           b'{"t": "caf\xe9 latin-1", "y": "a"}']
    (tmp_path / "d.jsonl").write_bytes(b"\n".join(good + bad) + b"\n")
    opts = dict(path="d.jsonl", text_field="t", label_field="y", split_sizes=[8, 2, 2])
    with pytest.raises(UserInputError, match=r"d\.jsonl: 4 of 16 rows \(25\.0%\) would be dropped as bad \(.*"
                       r"undecodable=1.*\), more than data\.max_skip_fraction=0\.01"):
        load_classification(cfg(tmp_path, tmp_path / "c", "t", "text", **opts))
    with caplog.at_level(logging.WARNING):
        ds = load_classification(cfg(tmp_path, tmp_path / "c", "t", "text", max_skip_fraction=0.3, **opts))
    assert ds.info["skipped"] == {"empty_text": 1, "missing_label": 1, "malformed": 1, "undecodable": 1}
    assert "skipped 4 bad rows" in caplog.text and ds.info["available_rows"] == 12
    (tmp_path / "empty.jsonl").write_bytes(b"\n".join(bad))
    with pytest.raises(UserInputError, match=r"empty\.jsonl: 4 of 4 rows \(100\.0%\) would be dropped"):
        load_classification(cfg(tmp_path, tmp_path / "c", "t", "text", path="empty.jsonl", text_field="t",
                                label_field="y"))
    with pytest.raises(UserInputError, match=r"empty\.jsonl: no valid rows"):
        load_classification(cfg(tmp_path, tmp_path / "c", "t", "text", path="empty.jsonl", text_field="t",
                                label_field="y", max_skip_fraction=1))


# ---- splits and caches -----------------------------------------------------------------------------------------
def test_splits_deterministic_cached_and_capped(fx, tmp_path):
    base = cfg(fx["root"], tmp_path / "a", "mind_topics", "mind_topics", split_sizes=[30, 10, 10])
    a = load_classification(base)
    assert a.info["sizes"] == {"train": 30, "val": 10, "test": 10} and a.info["cached"] is False
    assert len(list((tmp_path / "a" / "splits").glob("mind_topics-*.json"))) == 1
    again = load_classification(base)
    assert again.info["cached"] is True and texts(again, "test") == texts(a, "test")
    fresh = load_classification({**base, "cache_dir": str(tmp_path / "b")})
    assert texts(fresh, "val") == texts(a, "val")
    other = load_classification({**base, "cache_dir": str(tmp_path / "b"), "seed": 7})
    assert texts(other, "test") != texts(a, "test")
    capped = load_classification({**base, "max_train": 12, "max_eval": 4, "max_len": 3})
    assert [t.split()[:3] for t, _ in texts(a)][:12] == [t.split() for t, _ in texts(capped)]
    assert texts(capped, "test") == [(" ".join(t.split()[:3]), y) for t, y in texts(a, "test")[:4]]
    assert split_sizes(100, [40, 5, 5]) == ([40, 5, 5], split_sizes(100, [40, 5, 5])[1])
    assert split_sizes(20, [40, 5, 5])[0] == [16, 2, 2]


def test_split_derived_results_are_computed_once_per_dataset_and_length(fx, tmp_path):
    """ClassificationData.cached_json: a split property (e.g. the reference scores every run of a sweep reports) is
    computed by the first run only; another max_len (other truncation) is another entry."""
    base = cfg(fx["root"], tmp_path, "mind_topics", "mind_topics", split_sizes=[30, 10, 10], max_len=8)
    calls = []

    def compute(ds):
        calls.append(1)
        return {"tokens": sum(len(ids) for ids, _ in ds.train)}
    first = load_classification(base)
    value = first.cached_json("probe-v1", lambda: compute(first))
    again = load_classification(base)
    assert again.cached_json("probe-v1", lambda: compute(again)) == value and len(calls) == 1
    longer = load_classification({**base, "max_len": 64})
    assert longer.cached_json("probe-v1", lambda: compute(longer))["tokens"] > value["tokens"] and len(calls) == 2
    assert len(list((tmp_path / "derived").glob("*.json"))) == 2


def test_read_only_root_caches_elsewhere(fx, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(download, "writable_dir", lambda p: False if Path(p).name == ".cache" else True)
    out = download.default_cache_dir(fx["root"])
    assert out.is_relative_to(tmp_path / "xdg" / "fastformer" / "data")
    monkeypatch.undo()
    assert download.default_cache_dir(tmp_path) == tmp_path / ".cache"
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)  # no write bits: read-only even for root, who could still write
    try:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert download.default_cache_dir(locked).is_relative_to(tmp_path / "xdg") and not (locked / ".cache").exists()
    finally:
        locked.chmod(0o755)


def test_unknown_key_and_pad_collate():
    with pytest.raises(ValueError, match=r"unknown config key data.max_length; valid keys under data"):
        load_classification({"name": "x", "loader": "text", "max_length": 3})
    batch = pad_collate([([5, 6, 7], 1), ([8], 0)])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]] and batch["attention_mask"].sum() == 4
    assert batch["labels"].tolist() == [1, 0]


# ---- downloads -------------------------------------------------------------------------------------------------
def test_offline_download_error_names_url_and_path(tmp_path, monkeypatch):
    url = "http://127.0.0.1:9/aclImdb_v1.tar.gz"  # nothing listens on port 9: fails at once, like offline
    with pytest.raises(download.DataUnavailableError) as err:
        download.ensure_file(tmp_path / "imdb" / "aclImdb_v1.tar.gz", url=url)
    msg = str(err.value)
    assert "\n" not in msg and url in msg and str((tmp_path / "imdb" / "aclImdb_v1.tar.gz").resolve()) in msg
    monkeypatch.setattr(classification_sources, "IMDB_URL", url)
    with pytest.raises(download.DataUnavailableError, match="place it at .*imdb/aclImdb_v1.tar.gz"):
        load_classification(cfg(tmp_path, tmp_path / "c", "imdb", "imdb"))
    with pytest.raises(download.DataUnavailableError, match=r"set data.download=true"):
        load_classification(cfg(tmp_path, tmp_path / "c", "imdb", "imdb", download=False))


def test_connection_failures_are_remembered_so_an_offline_check_is_fast(tmp_path, monkeypatch):
    """No DNS (or a timeout): the first download fails, every later one (any host) fails at once without connecting;
    a refused connection only skips that host; HTTP errors and file:// URLs are never remembered."""
    import socket
    import urllib.error

    calls = []

    def urlopen(req, timeout=None):
        url = req.full_url
        calls.append(url)
        if "refused" in url:
            raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
        if "http404" in url:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(download.urllib.request, "urlopen", urlopen)
    for host in ("refused.example", "refused.example", "other.example"):  # the second refused one is not tried
        with pytest.raises(download.DataUnavailableError):
            download.download(f"https://{host}/a.gz", tmp_path / f"{host}.gz")
    assert calls == ["https://refused.example/a.gz", "https://other.example/a.gz"]
    calls.clear()
    download._UNREACHABLE.clear()
    for _ in range(2):
        with pytest.raises(download.DataUnavailableError):
            download.download("https://http404.example/a.gz", tmp_path / "x.gz")
    assert len(calls) == 2  # the server answered: not remembered
    with pytest.raises(download.DataUnavailableError, match="Name or service not known"):
        download.download("https://snap.example/a.gz", tmp_path / "a.gz")
    calls.clear()
    with pytest.raises(download.DataUnavailableError) as err:
        download.download("https://ai.example/b.tar.gz", tmp_path / "imdb" / "b.tar.gz")
    msg = str(err.value)
    assert calls == [] and "not tried" in msg and "snap.example failed with gaierror" in msg and "\n" not in msg
    assert str((tmp_path / "imdb" / "b.tar.gz").resolve()) in msg  # still names the path to place the file at
    src = tmp_path / "local.gz"
    src.write_bytes(gzip.compress(b"x"))
    monkeypatch.undo()
    assert download.download(src.as_uri(), tmp_path / "copy.gz").read_bytes() == src.read_bytes()  # file:// unaffected


def test_download_verifies_checksum(tmp_path):
    src = tmp_path / "src.json.gz"
    with gzip.open(src, "wb") as f:
        f.write(b'{"a": 1}\n')
    import hashlib
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    got = download.download(src.as_uri(), tmp_path / "out" / "x.json.gz", md5=md5)
    assert got.read_bytes() == src.read_bytes() and not list((tmp_path / "out").glob("*.part"))
    with pytest.raises(download.DataUnavailableError, match="md5 mismatch"):
        download.download(src.as_uri(), tmp_path / "out" / "y.json.gz", md5="0" * 32)
    assert not (tmp_path / "out" / "y.json.gz").exists()


# ---- GloVe -----------------------------------------------------------------------------------------------------
def test_glove_init_found_rows_oov_stats_and_projection(tmp_path):
    gen = torch.Generator().manual_seed(0)
    words = [f"w{i}" for i in range(200)]
    vecs = torch.randn(200, 8, generator=gen) * torch.linspace(0.5, 2.0, 8) + 3.0
    (tmp_path / "glove.txt").write_text("".join(f"{w} {' '.join(f'{x:.5f}' for x in v)}\n"
                                                for w, v in zip(words, vecs.tolist())))
    vocab = Vocab(["<pad>", "<unk>", *words[:100], *[f"oov{i}" for i in range(3000)]])
    same, stats = glove_init(vocab, tmp_path / "glove.txt", 8)
    assert stats["found"] == 100 and stats["oov"] == 3000 and same.shape == (len(vocab), 8)
    assert torch.allclose(same[2:102], vecs[:100], atol=1e-4) and same[0].abs().sum() == 0
    oov = same[102:]
    assert torch.allclose(oov.mean(0), vecs[:100].mean(0), atol=0.15)
    assert torch.allclose(oov.std(0), vecs[:100].std(0), rtol=0.15)
    pca, _ = glove_init(vocab, tmp_path / "glove.txt", 4)
    wide, s = glove_init(vocab, tmp_path / "glove.txt", 16)
    assert pca.shape == (len(vocab), 4) and wide.shape == (len(vocab), 16) and s["projection"] == "pca"


def test_embedding_init_from_config(fx, tmp_path):
    ds = load_classification(cfg(fx["root"], tmp_path, "t", "text", path="text/data.jsonl", text_field="text",
                                 label_field="label"))
    assert ds.embedding_init(16) is None
    words = ds.vocab.itos[2:12]
    (tmp_path / "g.txt").write_text("".join(f"{w} {' '.join(str(i + k) for k in range(6))}\n"
                                            for i, w in enumerate(words)))
    ds.options.glove_path = str(tmp_path / "g.txt")
    first = ds.embedding_init(4)
    assert first.shape == (len(ds.vocab), 4) and torch.equal(first, ds.embedding_init(4))
    assert list((tmp_path / "glove").glob("*.pt"))


# ---- real data (../shared/data) ----------------------------------------------------------------------------------
@pytest.mark.data
@pytest.mark.parametrize("name,n_classes,sizes,rows", [
    ("amazon", 5, (2000, 500, 500), 20216),   # 1,994 Electronics reviews < 3,000 requested -> all 10 categories
    ("imdb", 8, (2000, 500, 500), 50000),
    ("mind_topics", 15, (1600, 200, 200), 2000),  # 2,000 news: proportional 80/10/10 split of Table 1's sizes
])
def test_real_data_loads_with_shipped_configs(name, n_classes, sizes, rows, tmp_path_factory):
    if not SHARED.is_dir():
        pytest.skip(f"real data not found at {SHARED} (set SHARED_DATA)")
    node = OmegaConf.load(REPO / "configs" / "data" / f"{name}.yaml")
    node.merge_with({"root": str(SHARED), "cache_dir": str(tmp_path_factory.getbasetemp() / "real_cache"),
                     "max_train": 2000, "max_eval": 500, "max_len": 256})
    ds = load_classification(node)
    assert ds.n_classes == n_classes and ds.info["skipped"] == {} and ds.info["available_rows"] == rows
    assert (len(ds.train), len(ds.val), len(ds.test)) == sizes
    assert max(len(ids) for ids, _ in ds.train) <= 256 and {y for _, y in ds.train} == set(range(n_classes))
    if name == "amazon":
        assert len(ds.info["categories"]) == 10 and "Electronics" in ds.info["data_used"]
