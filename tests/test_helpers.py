"""The shared helpers of fastformer/utils.py (atomic writes, device resolution, git sha) and the debug config."""
from __future__ import annotations

import json

import pytest
import torch

from fastformer.utils import atomic_path, atomic_torch_save, atomic_write_json, atomic_write_text


# ---- atomic writes -----------------------------------------------------------------------------------------------
def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "out.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    atomic_write_text(tmp_path / "t.md", "x\n")
    atomic_torch_save({"w": torch.ones(2)}, tmp_path / "ck.pt")
    assert torch.load(tmp_path / "ck.pt")["w"].sum() == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["ck.pt", "out.json", "sub", "t.md"]


def test_atomic_path_error_keeps_old_file_and_removes_temp(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    seen = []
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(path, suffix=".part") as tmp:
            seen.append(tmp)
            assert tmp.parent == tmp_path and tmp.name.startswith(".out.txt.") and tmp.name.endswith(".part")
            tmp.write_text("half-writ")
            assert path.read_text() == "old"  # nothing partial is visible while writing
            raise RuntimeError("boom")
    assert path.read_text() == "old" and not seen[0].exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_directory(tmp_path):
    out = tmp_path / "cache" / "key"
    with atomic_path(out, directory=True) as tmp:
        assert tmp.is_dir() and not out.exists()
        (tmp / "a.txt").write_text("first")
    assert (out / "a.txt").read_text() == "first"
    with atomic_path(out, directory=True) as tmp:  # another job finished first: its complete folder is kept
        (tmp / "a.txt").write_text("second")
    assert (out / "a.txt").read_text() == "first"
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "cache" / "other", directory=True) as tmp:
            (tmp / "a.txt").write_text("x")
            raise ValueError
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["key"]


# ---- device resolution -------------------------------------------------------------------------------------------
def test_resolve_device_without_cuda(monkeypatch):
    from fastformer.utils import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(RuntimeError, match=r"trainer.device='cuda' but CUDA is not available.*use trainer.device=cpu"):
        resolve_device("cuda")
    with pytest.raises(RuntimeError, match=r"^device='cuda:1' but CUDA .*use device=cpu"):
        resolve_device("cuda:1", key="device")
    for bad in ("gpu", "mps", ""):
        with pytest.raises(ValueError, match=r"trainer.device=.* is not cpu, cuda, cuda:N or auto"):
            resolve_device(bad)


def test_resolve_device_with_cuda(monkeypatch):
    from fastformer.utils import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(RuntimeError, match=r"trainer.device='cuda:2' but only 2 CUDA device"):
        resolve_device("cuda:2")


# ---- git sha -----------------------------------------------------------------------------------------------------
def test_git_sha_clean_dirty_and_outside_git(tmp_path, monkeypatch):
    import shutil
    import subprocess

    from fastformer.utils import git_sha

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false",
                               *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    assert git_sha(path=repo) == "unknown"  # no commit yet
    (repo / "a.txt").write_text("1\n")
    git("add", "a.txt")
    git("commit", "-q", "-m", "first")
    sha = git("rev-parse", "--short", "HEAD")
    assert git_sha(path=repo) == sha
    assert git_sha(short=False, path=repo) == git("rev-parse", "HEAD")
    (repo / "new.txt").write_text("untracked files do not make it dirty\n")
    assert git_sha(path=repo) == sha
    for out in ("results/t.md", "logs/m/metrics.json"):  # generated outputs, tracked: changing them is not dirty
        (repo / out).parent.mkdir(parents=True, exist_ok=True)
        (repo / out).write_text("1\n")
        git("add", out)
    git("commit", "-q", "-m", "outputs")
    sha = git("rev-parse", "--short", "HEAD")
    (repo / "results" / "t.md").write_text("rebuilt\n")
    (repo / "logs" / "m" / "metrics.json").write_text("rerun\n")
    assert git_sha(path=repo) == sha
    assert git_sha(path=repo / "results") == sha  # (also asked from a subfolder)
    (repo / "a.txt").write_text("2\n")
    assert git_sha(path=repo) == f"{sha}+dirty"
    assert git_sha(path=repo / "results") == f"{sha}+dirty"
    git("add", "a.txt")  # staged but not committed: still dirty
    assert git_sha(path=repo) == f"{sha}+dirty"
    assert git_sha(path=tmp_path / "missing") == "unknown"
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no git binary at all
    assert git_sha(path=repo) == "unknown"


# ---- debug config ------------------------------------------------------------------------------------------------
def test_debug_config_composes(compose_cfg):
    from hydra import compose, initialize_config_dir

    from tests.conftest import ROOT

    cfg = compose_cfg(["experiment=imdb/fastformer", "debug=default"])
    t = cfg.trainer
    assert (t.max_epochs, t.limit_train_batches, t.log_every, t.progress_bar) == (1, 5, 1, True)
    assert cfg.logger.kind == "none" and cfg.skip_finished is False and cfg.experiment_name == "imdb/fastformer"
    assert compose_cfg(["experiment=imdb/fastformer", "debug=default", "logger=wandb", "trainer.max_epochs=2",
                        "skip_finished=true"]).logger.kind == "wandb"  # the command line still wins
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        hcfg = compose("train", overrides=["experiment=imdb/fastformer", "debug=default"], return_hydra_config=True)
        plain = compose("train", overrides=["experiment=imdb/fastformer"], return_hydra_config=True)
    logs = hcfg.paths.log_dir
    assert hcfg.hydra.run.dir.startswith(f"{logs}/debug/runs/imdb/fastformer/")
    assert hcfg.hydra.sweep.dir == f"{logs}/debug/multiruns/quick"
    assert "/debug/" not in plain.hydra.run.dir and plain.trainer.max_epochs != 1 and plain.logger.kind == "wandb"
