"""Config schemas (fastformer/config_schema.py): an unknown or mistyped key anywhere -- command line, experiment
file, configs/local/default.yaml -- is rejected with one line naming it and the valid keys, before any data is read.
(tests/test_rows.py validates every experiment file under the default preset.)"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from fastformer.config_schema import ConfigError, validate_config

ROOT = Path(__file__).resolve().parents[1]


def _compose(overrides, config_dir: Path = ROOT / "configs"):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(config_dir), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.mark.parametrize("exp", ["imdb/fastformer", "mind_rec/fastformer_plm_nr", "cnndm/longformer",
                                 "probe/fastformer ablation=global_key_from_k",
                                 "amazon/fastformer ablation=sharing_qv"])
def test_paper_preset_validates(exp):
    exp, *more = exp.split()
    validate_config(_compose([f"experiment={exp}", "preset=paper", *more]))


@pytest.mark.parametrize("override,key", [
    ("+trainer.max_epoch=3", "trainer.max_epoch"),
    ("+model.mixer.window_size=8", "model.mixer.window_size"),
    ("+model.encoder.n_layer=4", "model.encoder.n_layer"),
    ("+data.pathh=x.jsonl", "data.pathh"),
    ("+task.batchsize=8", "task.batchsize"),
    ("+optimizer.momentum=0.9", "optimizer.momentum"),  # Adam has no momentum
    ("+logger.projct=x", "logger.projct"),
    ("+max_epochs=3", "<root>.max_epochs"),
])
def test_unknown_key_on_the_command_line_names_it_and_the_valid_ones(override, key):
    with pytest.raises(ConfigError, match=rf"unknown config key {key.replace('.', '[.]')} .*valid keys under"):
        validate_config(_compose(["experiment=imdb/longformer", override]))


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"trainer\.max_epochs.*'three'"):
        validate_config(_compose(["experiment=imdb/fastformer", "trainer.max_epochs=three"]))


@pytest.mark.parametrize("where", ["experiment", "local"])
def test_typo_in_an_experiment_file_or_the_local_config_is_rejected(tmp_path, where):
    configs = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", configs, ignore=shutil.ignore_patterns("local"))
    if where == "experiment":
        f = configs / "experiment" / "imdb" / "longformer.yaml"
        f.write_text(f.read_text() + "trainer:\n  max_epoch: 5\n")
    else:
        (configs / "local").mkdir()
        (configs / "local" / "default.yaml").write_text("# @package _global_\ntrainer:\n  max_epoch: 5\n")
    with pytest.raises(ConfigError, match=r"unknown config key trainer\.max_epoch .*max_epochs"):
        validate_config(_compose(["experiment=imdb/longformer"], configs))


@pytest.mark.parametrize("mixer", ["bigbird", "linformer", "poolingformer"])
def test_a_causal_cell_of_a_mixer_without_a_causal_form_names_the_ones_with_one(mixer):
    """experiment=probe_causal/<mixer> exists for every mixer (fastformer/cells); the probe's base sets
    model.mixer.causal=true, which a mixer without a causal form rejects in one line."""
    with pytest.raises(ConfigError, match=rf"model\.mixer\.causal=true but mixer '{mixer}' has no causal form; "
                                          r"mixers with one: \[.*'fastformer'.*'transformer'\]"):
        validate_config(_compose([f"experiment=probe_causal/{mixer}"]))


def test_a_cell_file_replaces_its_registered_cell(tmp_path):
    """Giving a mixer-only cell (fastformer/cells) its own settings is adding its file: the cell is then no longer
    registered, and the file composes; the other mixer-only cells stay registered."""
    from fastformer.cells import mixer_only_cells

    configs = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", configs, ignore=shutil.ignore_patterns("local"))
    assert "imdb/fastformer" in mixer_only_cells(configs)
    (configs / "experiment" / "imdb" / "fastformer.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /experiment/imdb/base\n  - override /model/mixer: fastformer\n\n"
        "row: my_fastformer\n")
    assert "imdb/fastformer" not in mixer_only_cells(configs) and "imdb/performer" in mixer_only_cells(configs)
    assert _compose(["experiment=imdb/performer"], configs).model.mixer.name == "performer"
    assert _compose(["experiment=imdb/fastformer"]).experiment_name == "imdb/fastformer"


def test_train_rejects_before_reading_data(compose_cfg, tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    from train import train

    cfg = compose_cfg(["experiment=imdb/fastformer", f"data.root={tmp_path}/nothing-here", "logger=none",
                       "+trainer.max_epoch=1"])
    with pytest.raises(ConfigError, match="trainer.max_epoch"):
        train(cfg, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # nothing written, no data looked for
