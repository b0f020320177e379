"""The tables' rows (fastformer/results/rows.py) and the sweeps that make their runs agree.

Every job scripts/reproduce.py launches, for every preset and every stage the preset runs (its sweep files, or its
``stage_waves`` in their place), is composed with Hydra the way the sweep runs it; its cfg.task.name, cfg.data.name
and cfg.row (the row) must name a cell that a table the stage feeds lists, and every cell a table lists must be
run by some job of the preset, save the gaps rows.NOT_RUN names with their reasons.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fastformer.results import ablations, probes, rows, table4, table5, table6

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
sys.path.insert(0, str(ROOT / "scripts"))
import make_tables  # noqa: E402
import reproduce  # noqa: E402

PRESETS = ("paper", "quick", "cpu")  # paper first: its stages run the sweep files as written
ROW_KEYS = {"row", "data.name", "task.name"}  # the keys besides config groups that can set a run's row fields


def preset_stages(rcfg, preset: str) -> list[str]:
    """The stages a preset runs: its default ``preset_stages`` and those it gives waves, seeds or overrides for."""
    named = set(rcfg.preset_stages[preset])
    for key in ("stage_waves", "stage_seeds", "stage_overrides"):
        named |= set((rcfg.get(key) or {}).get(preset) or {})
    return [s for s in reproduce.STAGE_TABLES if s in named]


def _row_part(override: str) -> str | None:
    """The part of a job override that can change its task, dataset or row: config-group choices and the row keys.
    The seed, the preset (sizes and epochs only) and values of nested keys (data.seq_len, optimizer.lr, ...) cannot."""
    key = override.split("=", 1)[0].lstrip("+~")
    if key in ("seed", "preset") or ("." in key and key not in ROW_KEYS):
        return None
    return override


@pytest.fixture(scope="module")
def jobs() -> dict[str, dict[str, set[tuple[str, str, str]]]]:
    """preset -> stage -> {(task, dataset, row)} of the jobs scripts/reproduce.py launches. Each command is split
    into its jobs as Hydra's BasicSweeper splits it (the sweep file's params + the command line); jobs that differ only
    where :func:`_row_part` says the row cannot are composed once."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    commands = {}
    with initialize_config_dir(str(CONFIGS / "reproduce"), version_base="1.3"):
        for preset in PRESETS:
            rcfg = compose("reproduce", overrides=[f"preset={preset}", "logger=none"])
            commands[preset] = {stage: [cmd[3:] for cmd in reproduce.stage_commands(stage, rcfg)]
                                for stage in preset_stages(rcfg, preset)}
    seen: dict[tuple, tuple[str, str, str]] = {}
    out: dict[str, dict[str, set]] = {}
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        loader = GlobalHydra.instance().hydra.config_loader
        parser = OverridesParser.create(loader)
        for preset, stages in commands.items():
            for stage, cmds in stages.items():
                cells = out.setdefault(preset, {}).setdefault(stage, set())
                for overrides in cmds:
                    master = loader.load_configuration("train", overrides, run_mode=RunMode.MULTIRUN)
                    args = [f"{k}={v}" for k, v in (master.hydra.sweeper.params or {}).items()]
                    batches = BasicSweeper.split_arguments(
                        parser.parse_overrides(args + list(master.hydra.overrides.task)), None)
                    for job in (j for batch in batches for j in batch):
                        key = tuple(sorted(filter(None, map(_row_part, job))))
                        if key not in seen:
                            cfg = loader.load_sweep_config(master, list(job))
                            seen[key] = (str(cfg.task.name), str(cfg.data.name), str(cfg.row))
                        cells.add(seen[key])
    return out


def _cell(table: str, task: str, dataset: str, recorded_row: str) -> tuple[str, str] | None:
    spec = rows.TABLES[table]
    row = spec.row_of(recorded_row) if task == spec.task else None
    return (dataset, row) if row is not None and (dataset, row) in spec.cells else None


@pytest.mark.parametrize("preset", PRESETS)
def test_every_job_fills_a_cell_its_tables_list(jobs, preset):
    """A job of a stage is a (dataset, row) cell of a table that stage feeds (scripts/reproduce.py STAGE_TABLES):
    no sweep runs an experiment that no table shows, and none runs a row under a name the tables do not list."""
    assert jobs[preset], preset
    stray = sorted((stage, *job) for stage, js in jobs[preset].items() for job in js
                   if not any(_cell(t, *job) for t in reproduce.STAGE_TABLES[stage]))
    assert not stray, f"{preset}: jobs (stage, task, dataset, row) in no listed cell: {stray}"


@pytest.mark.parametrize("preset", PRESETS)
def test_every_listed_cell_is_run_save_the_named_gaps(jobs, preset):
    """Every cell of every table the preset's stages feed is run by some job of the preset (every job of the preset
    shares its runs root), except the cells rows.NOT_RUN names for that preset, and those really are not run."""
    tables = {t for stage in jobs[preset] for t in reproduce.STAGE_TABLES[stage]}
    everything = {job for js in jobs[preset].values() for job in js}
    for table in sorted(tables):
        made = {c for job in everything if (c := _cell(table, *job))}
        gaps = rows.not_run(table, preset)
        unrun = rows.TABLES[table].cells - made - gaps
        assert not unrun, f"{preset}/{table}: listed cells no sweep runs, not named in rows.NOT_RUN: {sorted(unrun)}"
        assert not gaps & made, f"{preset}/{table}: rows.NOT_RUN names cells that a sweep runs: {sorted(gaps & made)}"


def test_the_quick_and_paper_presets_run_every_table():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONFIGS / "reproduce"), version_base="1.3"):
        for preset in ("quick", "paper"):
            rcfg = compose("reproduce", overrides=[f"preset={preset}", "logger=none"])
            fed = {t for s in preset_stages(rcfg, preset) for t in reproduce.STAGE_TABLES[s]}
            assert fed == set(rows.TABLES), (preset, fed)


def test_tables_and_gaps_are_well_formed():
    assert set(rows.TABLES) == set(make_tables.TABLES)  # one layout per table scripts/make_tables.py builds
    for gap in rows.NOT_RUN:
        assert gap.table in rows.TABLES and gap.cells and gap.reason.strip(), gap
        assert gap.cells <= rows.TABLES[gap.table].cells, (gap.table, sorted(gap.cells - rows.TABLES[gap.table].cells))
        assert set(gap.presets) <= set(PRESETS), gap.presets


def test_paper_numbers_and_names_belong_to_listed_rows():
    for paper, table_rows, datasets in ((rows.TABLE4_PAPER, rows.TABLE4_ROWS, rows.TABLE4_DATASETS),
                                        (rows.TABLE6_PAPER, rows.TABLE6_ROWS, rows.TABLE6_DATASETS),
                                        (rows.ABLATION_PAPER, rows.ABLATION_ROWS, rows.ABLATION_DATASETS)):
        assert set(paper) <= set(table_rows), sorted(set(paper) - set(table_rows))
        assert all(set(by_ds) == set(datasets) for by_ds in paper.values()), paper
    assert set(rows.TABLE5_PAPER) <= set(rows.TABLE5_ROWS) and rows.TABLE5_PLM_ROWS <= set(rows.TABLE5_ROWS)
    # the paper-only rows have no row of ours: their display names are not a listed row's
    assert not set(rows.TABLE5_PAPER_ONLY) & {rows.TABLE5_NAMES[r] for r in rows.TABLE5_ROWS}
    # every figure bar has the paper's value; the full model's bars are Table 4's Fastformer (PAPER.md §2.6)
    assert all(k in rows.ABLATION_PAPER for figure in rows.ABLATION_FIGURES.values() for k, _ in figure)
    assert rows.ABLATION_PAPER["full"] == rows.TABLE4_PAPER["fastformer"]
    for names, table_rows in ((rows.NAMES, rows.TABLE4_ROWS), (rows.TABLE5_NAMES, rows.TABLE5_ROWS),
                              (rows.NAMES, rows.TABLE6_ROWS)):
        assert set(table_rows) <= set(names), sorted(set(table_rows) - set(names))
    # a per-table name overrides only a row the shared dict already names, and names it differently
    assert {r for r in rows.TABLE5_NAMES if rows.TABLE5_NAMES[r] != rows.NAMES.get(r)} == {"transformer"}


def test_builders_read_the_rows_module():
    """No builder keeps its own copy: what each lays its table out by is the rows module's object."""
    same = [(table4.ROWS, rows.TABLE4_ROWS), (table4.DATASETS, rows.TABLE4_DATASETS), (table4.PAPER, rows.TABLE4_PAPER),
            (table4.NAMES, rows.NAMES), (table5.ROWS, rows.TABLE5_ROWS), (table5.NAMES, rows.TABLE5_NAMES),
            (table5.PAPER, rows.TABLE5_PAPER), (table5.PAPER_ONLY, rows.TABLE5_PAPER_ONLY),
            (table5.PLM_ROWS, rows.TABLE5_PLM_ROWS), (table6.ROWS, rows.TABLE6_ROWS),
            (table6.DATASETS, rows.TABLE6_DATASETS), (table6.PAPER, rows.TABLE6_PAPER), (table6.NAMES, rows.NAMES),
            (ablations.DATASETS, rows.ABLATION_DATASETS), (ablations.PAPER, rows.ABLATION_PAPER),
            (ablations.FIGURES, rows.ABLATION_FIGURES), (ablations.REDUNDANCY, rows.ABLATION_REDUNDANCY),
            (probes.ROWS, rows.PROBE_ROWS), (probes.PROBES, rows.PROBE_DATASETS),
            (probes.CAUSAL_ROWS, rows.CAUSAL_ROWS)]
    assert all(a is b for a, b in same)
