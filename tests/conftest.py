"""Shared fixtures: a tiny data root in the original formats, Hydra composition, the shared real-data root."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(min(2, torch.get_num_threads()))


def shared_data_root() -> Path | None:
    """../shared/data (or $SHARED_DATA) when present; tests using it skip otherwise."""
    cand = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
    return cand if cand.is_dir() else None


@pytest.fixture(autouse=True)
def _fresh_network_memo():
    """Each test starts without the download module's memo of unreachable hosts (fastformer/data/download.py)."""
    from fastformer.data import download

    download._UNREACHABLE.clear()
    yield
    download._UNREACHABLE.clear()


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory) -> Path:
    from fastformer.data.fixtures import write_all_fixtures

    root = tmp_path_factory.mktemp("data")
    write_all_fixtures(root, n_per_class=24)
    return root


@pytest.fixture
def compose_cfg():
    """compose_cfg([...overrides]) -> the composed train.yaml config (with hydra keys resolved for a run)."""
    from hydra import compose, initialize_config_dir

    def _compose(overrides: list[str], config_name: str = "train"):
        with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
            return compose(config_name, overrides=overrides)

    return _compose


@pytest.fixture
def check_sharded_eval():
    """check_sharded_eval(task, model, split): the records of 2 (or ``world``) evaluation shards, gathered in rank
    order, give the metrics of one whole evaluation (what the Trainer relies on under DDP)."""
    import torch

    from fastformer.tasks.base import build_loader, device_batches
    from fastformer.train.distributed import ShardSampler

    def _check(task, model, split: str, world: int = 2) -> dict:
        device = next(model.parameters()).device
        model.eval()
        with torch.no_grad():
            whole = task.evaluate(model, split)
            records = []
            for r in range(world):
                batches = {s: device_batches(build_loader(task, s, sampler=ShardSampler(len(task.dataset(s)), rank=r,
                                                                                        world=world)), device)
                           for s in task.eval_splits(split)}
                records += task.eval_outputs(model, split, batches, device)
            sharded = task.eval_metrics(records, split)
        assert sharded.keys() == whole.keys()
        for k in whole:
            assert sharded[k] == pytest.approx(whole[k], rel=1e-6, abs=1e-9), k
        return whole

    return _check
