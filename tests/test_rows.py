"""Table rows come from explicit fields: every experiment file names its row (``row``: the mixer, or the name an
experiment or ablation file sets), metrics.json records it beside task, dataset and mixer, and the table builders place
runs by those fields, never by parsing the experiment string."""
from __future__ import annotations

from pathlib import Path

import pytest

from fastformer.cells import cells, datasets, mixer_only_cells

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXPERIMENTS = sorted([*cells(), *(f"{d}/base" for d in datasets())])  # cell files, mixer-only cells, dataset bases
ABLATIONS = sorted(p.stem for p in (CONFIGS / "ablation").glob("*.yaml"))  # applied over <dataset>/fastformer


@pytest.fixture(scope="module")
def compose_experiment():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        yield lambda name, *more: compose("train", overrides=[f"experiment={name}", *more, "logger=none"])


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_names_its_row(compose_experiment, name):
    """cfg.row (the row written to metrics.json) is the last component of the experiment's name; it is the mixer
    unless the file sets it (forms of one mixer, ablations, the PLM rows)."""
    from fastformer.config_schema import ConfigError, validate_config
    from fastformer.mixers import causal_mixers

    cfg = compose_experiment(name)
    if cfg.model.mixer.get("causal") and cfg.model.mixer.name not in causal_mixers():
        with pytest.raises(ConfigError, match="has no causal form"):  # probe_causal/<mixer without one>: one line
            validate_config(cfg)
    else:
        validate_config(cfg)  # every key of every experiment is in the schemas (fastformer/config_schema.py)
    assert cfg.row == str(cfg.experiment_name).split("/")[-1], (name, cfg.row, cfg.experiment_name)
    assert cfg.row  # never empty


def test_experiments_found():
    assert len(EXPERIMENTS) > 60 and "imdb/pooling_baseline" in EXPERIMENTS and "global_key_from_k" in ABLATIONS


@pytest.mark.parametrize("dataset", ["amazon", "imdb", "mind_topics"])
@pytest.mark.parametrize("ablation", ABLATIONS)
def test_every_ablation_over_every_dataset_names_its_row(compose_experiment, dataset, ablation):
    """``experiment=<dataset>/fastformer ablation=<name>``: the Fastformer experiment with one switch changed, in the
    run dir ``<dataset>/<name>`` and the row ``<name>``."""
    from fastformer.config_schema import validate_config

    cfg = compose_experiment(f"{dataset}/fastformer", f"ablation={ablation}")
    base = compose_experiment(f"{dataset}/fastformer")
    validate_config(cfg)
    assert cfg.experiment_name == f"{dataset}/{ablation}" and cfg.row == ablation
    changed = {k for k in cfg.model.mixer if cfg.model.mixer[k] != base.model.mixer[k]}
    assert len(changed) == 1 and cfg.data == base.data and cfg.trainer == base.trainer, changed


# ------------------------------------------------------------------------------ builders read the recorded fields
MISLEADING = "probe/probe_dup/L128_P8/transformer"  # an experiment string that, if parsed, names a different row


def _write(root: Path, name: str, rec: dict, failed: bool = False) -> None:
    import json

    d = root / name  # run dirs named after nothing: only the record's fields can place the run
    d.mkdir(parents=True)
    (d / ("failed.json" if failed else "metrics.json")).write_text(json.dumps(rec))


def _rec(task, dataset, mixer, row, seed, experiment=MISLEADING, **extra):
    rec = {"task": task, "dataset": dataset, "mixer": mixer, "row": row, "seed": seed, "params": 100,
           "device": "CPU (test)", **extra}
    if experiment is not None:
        rec["experiment"] = experiment
    return rec


def _row(md: str, section: str | None, name: str) -> str:
    text = md.split(f"## {section}")[1].split("\n## ")[0] if section else md
    return next(line for line in text.splitlines() if line.startswith(f"| {name} |"))


def test_builders_place_runs_by_their_fields_not_the_experiment_string(tmp_path):
    from fastformer.results import ablations, probes, table4, table5, table6

    runs, out = tmp_path / "runs", tmp_path / "out"
    cls = lambda acc: {"test": {"acc": acc, "macro_f1": acc / 2}, "data_info": {"data_used": "fields test"}}  # noqa: E731
    for seed in (1, 2):
        _write(runs, f"a{seed}", _rec("classification", "amazon", "fastformer", "fastformer_official", seed,
                                      **cls(70.0 + seed)))
        _write(runs, f"b{seed}", _rec("classification", "imdb", "fastformer", "fastformer", seed, experiment=None,
                                      **cls(60.0)))
        _write(runs, f"c{seed}", _rec("classification", "imdb", "fastformer", "global_key_from_k", seed,
                                      experiment="imdb/fastformer", **cls(50.0 + seed)))
    _write(runs, "d", _rec("classification", "mind_topics", "longformer", "longformer", 1,
                           experiment="amazon/transformer"), failed=True)
    nr = {"test": {"auc": 61.0, "mrr": 30.0, "ndcg@5": 33.0, "ndcg@10": 40.0}, "data_info": {"data_used": "x"}}
    _write(runs, "e", _rec("newsrec", "mind_rec", "transformer", "plm_nr", 1, experiment="mind_rec/transformer", **nr))
    sm = {"test": {"rouge1": 31.0, "rouge2": 11.0, "rougeL": 21.0, "rougeLsum": 25.0}}
    _write(runs, "f", _rec("summarization", "cnndm", "fastformer", "fastformer", 1, experiment="pubmed/bigbird", **sm))
    mq = {"probe": "mqar", "seq_len": 32, "params": {"n_pairs": 2, "vocab": 64}, "n_train": 10}
    _write(runs, "g", _rec("probe", "probe_mqar", "fastformer", "fastformer_official", 1, test={"acc": 97.0},
                           data_info=mq))
    _write(runs, "h", _rec("probe", "probe_dup", "transformer", "transformer", 1, experiment=None,
                           test={"acc": 55.0}, data_info={"probe": "dup", "seq_len": 64, "params": {}}))

    md = table4.build(runs, out, "quick").read_text()
    assert _row(md, "Amazon", "Fastformer (released-code layer)").startswith("| Fastformer (released-code layer) | "
                                                                            "71.50 ± 0.71 |")
    assert _row(md, "IMDB", "Fastformer").startswith("| Fastformer | 60.00 ± 0.00 |")
    assert _row(md, "MIND (topics)", "Longformer").startswith("| Longformer | failed |")
    assert _row(md, "Amazon", "Transformer").startswith("| Transformer | — |")  # the strings named amazon/transformer
    assert "51.50" not in md  # the ablation run is not a Table 4 row, whatever its experiment string says

    md = table5.build(runs, out, "quick").read_text()
    assert _row(md, None, "PLM-NR").startswith("| PLM-NR | 61.00 |")
    assert _row(md, None, "Transformer (NRMS-style)").startswith("| Transformer (NRMS-style) | — |")

    md = table6.build(runs, out, "quick").read_text()
    assert _row(md, "CNN/DailyMail", "Fastformer").startswith("| Fastformer | 31.00 |")
    assert "31.00" not in md.split("## PubMed")[1]

    md = ablations.build(runs, out, "quick").read_text()
    # IMDB columns of the redundancy table: Acc, Δ Acc (paired by seed vs the full model), params
    assert "| no query-key product in k* | — | — | — | 51.50 ± 0.71 | -8.50 | 100 | — | — | — |" in md
    assert "| Fastformer (released-code layer) | 71.50 ± 0.71 | ref" not in md
    assert _row(md, None, "Fastformer (released-code layer)").startswith("| Fastformer (released-code layer) | "
                                                                         "71.50 ± 0.71 |")

    md = probes.build(runs, out, "quick").read_text()
    mqar = md.split("(`data=probe_mqar`)")[1].split("\n## ")[0]
    assert "L=32" in md.split("(`data=probe_mqar`)")[0].splitlines()[-1]  # the panel of length 32
    assert "| Mixer | P=2 | n | params |" in mqar and "| fastformer_official | 97.0 | 1 | 100 |" in mqar
    dup = md.split("(`data=probe_dup`)")[1].split("\n## ")[0]
    assert "| Mixer | L=64 | n | params |" in dup and "| transformer | 55.0 | 1 | 100 |" in dup
    assert "L=128" not in md and "P=8" not in md


# ------------------------------------------------------------------------------------------ committed records
def test_every_committed_run_record_names_its_row():
    """The run outcomes committed under logs/multiruns/ (the evidence behind results/) all carry the row fields the
    builders place runs by; the records written before those fields existed were migrated in place (2026-12-07)."""
    import json

    from fastformer.results.common import ROW_FIELDS

    root = CONFIGS.parent / "logs" / "multiruns"
    records = [p for name in ("metrics.json", "failed.json") for p in root.rglob(name)]
    assert len(records) > 300
    missing = [str(p) for p in records if not all(k in json.loads(p.read_text()) for k in ROW_FIELDS)]
    assert not missing, missing[:5]


def test_records_missing_a_field_get_none_and_failed_ones_are_kept(tmp_path):
    from fastformer.results.common import load_runs

    _write(tmp_path, "new", _rec("classification", "amazon", "fastformer", "sharing_qv", 1))
    _write(tmp_path, "old", {"task": "classification", "dataset": "imdb", "mixer": "linformer", "row": "linformer",
                             "seed": 1, "error": "boom"}, failed=True)
    new, old = load_runs(tmp_path)
    assert (new.get("dataset"), new.get("row"), new.get("data_info")) == ("amazon", "sharing_qv", None)
    assert (old.status, old.get("dataset"), old.get("row")) == ("failed", "imdb", "linformer")


def test_an_untagged_mqar_run_keeps_its_length_axis(tmp_path):
    """probe_mqar runs made before the _P tag (data_info.pairs_axis false, as migrated) are tabulated with x = sequence
    length; tagged ones form one panel per length with x = n_pairs."""
    from fastformer.results import probes
    from fastformer.results.common import load_runs

    _write(tmp_path, "old", _rec("probe", "probe_mqar", None, "transformer", 1, data_info={
        "probe": "mqar", "seq_len": 64, "pairs_axis": False, "params": {"n_pairs": 4}}))
    _write(tmp_path, "new", _rec("probe", "probe_mqar", "transformer", "transformer", 1,
                                 data_info={"probe": "mqar", "seq_len": 64, "params": {"n_pairs": 4}}))
    old, new = sorted(load_runs(tmp_path), key=lambda r: r.path.name, reverse=True)
    assert probes._key(old) == ("probe_mqar", 64, "transformer")
    assert probes._key(new) == ("probe_mqar@L64", 4, "transformer")


def _sets_nothing(path: Path) -> bool:
    """An experiment file whose only content is its defaults list (the base + the mixer)."""
    body = [ln for ln in path.read_text().splitlines()
            if ln.strip() and not ln.startswith("#") and not ln.startswith("defaults:") and not ln.startswith("  - ")]
    return not body


MIXER_ONLY = mixer_only_cells()


def test_mixer_only_cells_exist_for_every_dataset_and_mixer():
    """fastformer/cells registers ``<dataset>/<mixer>`` wherever no file of that name exists; with the files they
    cover every dataset base x every mixer config."""
    mixers = sorted(p.stem for p in (CONFIGS / "model" / "mixer").glob("*.yaml"))
    assert "imdb/fastformer" in MIXER_ONLY and "imdb/longformer" not in MIXER_ONLY and len(MIXER_ONLY) > 30
    assert {f"{d}/{m}" for d in datasets() for m in mixers} <= set(cells())
    assert not any((CONFIGS / "experiment" / f"{name}.yaml").exists() for name in MIXER_ONLY)


@pytest.mark.parametrize("name", sorted(p.relative_to(CONFIGS / "experiment").as_posix()
                                        for p in (CONFIGS / "experiment").rglob("*.yaml") if p.stem != "base"))
def test_no_cell_file_only_picks_the_mixer(name):
    """A cell file states what the cell changes (Table 8's sizes, a row name); one that would only repeat its base
    and mixer is not written: that cell is registered (configs state only differences)."""
    assert not _sets_nothing(CONFIGS / "experiment" / name), f"configs/experiment/{name} only picks the mixer"


@pytest.mark.parametrize("name", MIXER_ONLY)
def test_a_mixer_only_cell_is_its_base_with_the_mixer(compose_experiment, name):
    """configs/README.md: ``experiment=<dataset>/<mixer>`` without a file composes exactly what
    ``experiment=<dataset>/base model/mixer=<mixer>`` does, and records the cell's name as the experiment."""
    from hydra import compose
    from omegaconf import OmegaConf

    cell = compose("train", overrides=[f"experiment={name}", "logger=none"], return_hydra_config=True)
    dataset, mixer = name.rsplit("/", 1)
    composed = compose_experiment(f"{dataset}/base", f"model/mixer={mixer}")
    assert cell.hydra.runtime.choices.experiment == name and cell.model.mixer.name == mixer
    OmegaConf.set_struct(cell, False)
    del cell["hydra"]
    assert OmegaConf.to_container(cell, resolve=True) == OmegaConf.to_container(composed, resolve=True)


def test_migrate_rows_moves_old_keys_and_renames_the_field(tmp_path):
    """scripts/migrate_rows.py (the 2026-12-07 naming): ``ablation/<ds>/<row>`` -> ``<ds>/<row>``, the probes'
    ``fastformer_global_key_k`` -> ``global_key_from_k``, the record's ``variant`` -> ``row``; an unfinished moved run
    loses its checkpoint; a second pass changes nothing; an existing target is never overwritten."""
    import json
    import sys

    sys.path.insert(0, str(CONFIGS.parent / "scripts"))
    import migrate_rows

    root = tmp_path / "multiruns" / "cpu"

    def run(exp, seed, row, finished=True):
        d = root / exp / f"seed{seed}"
        (d / "checkpoints").mkdir(parents=True)
        (d / "checkpoints" / "last.pt").write_bytes(b"x")
        name = "metrics.json" if finished else "failed.json"
        (d / name).write_text(json.dumps({"task": "classification", "dataset": "imdb", "mixer": "fastformer",
                                          "variant": row, "experiment": exp, "seed": seed}, indent=2) + "\n")
    run("ablation/imdb/no_key_branch", 1, "no_key_branch")
    run("ablation/imdb/no_key_branch", 2, "no_key_branch", finished=False)
    run("probe/probe_dup/L32/fastformer_global_key_k", 1, "fastformer_global_key_k")
    run("imdb/transformer", 1, "transformer")
    run("imdb/sharing_qv", 1, "sharing_qv")
    run("ablation/imdb/sharing_qv", 1, "sharing_qv")  # its target exists: kept in place

    assert migrate_rows.main([str(tmp_path / "multiruns")]) == 0
    moved = json.loads((root / "imdb/no_key_branch/seed1/metrics.json").read_text())
    assert moved["row"] == "no_key_branch" and "variant" not in moved and moved["experiment"] == "imdb/no_key_branch"
    assert (root / "imdb/no_key_branch/seed1/checkpoints/last.pt").exists()      # finished: kept with the run
    assert not (root / "imdb/no_key_branch/seed2/checkpoints/last.pt").exists()  # unfinished: starts over
    probe = json.loads((root / "probe/probe_dup/L32/global_key_from_k/seed1/metrics.json").read_text())
    assert probe["row"] == "global_key_from_k" and probe["experiment"] == "probe/probe_dup/L32/global_key_from_k"
    assert json.loads((root / "imdb/transformer/seed1/metrics.json").read_text())["row"] == "transformer"
    assert (root / "ablation/imdb/sharing_qv/seed1/metrics.json").exists()       # not overwritten
    assert not (root / "ablation/imdb/no_key_branch").exists() and not (root / "probe/probe_dup/L32/"
                                                                         "fastformer_global_key_k").exists()
    before = sorted(str(p) for p in root.rglob("*"))
    assert migrate_rows.main([str(tmp_path / "multiruns")]) == 0
    assert sorted(str(p) for p in root.rglob("*")) == before
