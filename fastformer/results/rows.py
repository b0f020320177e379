"""Every table's datasets, rows, display names and the paper's numbers, in one place.

The table builders (fastformer/results/<table>.py) lay their tables out from here, and tests/test_table_rows.py checks
that the sweeps that make the runs agree with it: every job of every stage (configs/sweep/<stage>.yaml, or the waves
of configs/reproduce/reproduce.yaml's ``stage_waves`` where a preset runs a stage in waves) lands in a cell listed here,
and every listed cell is run by some sweep, save the gaps in :data:`NOT_RUN`, each named with its reason.

A run's cell is (``dataset``, row) from its recorded fields (fastformer/results/common.py ``ROW_FIELDS``): ``dataset``
= cfg.data.name, and ``row`` (cfg.row: the mixer, or the name an experiment or ablation file sets; the ablation
figures rename Table 4's Fastformer runs, :func:`ablation_row`). Display names: one shared dict,
:data:`NAMES`; a table overrides a name only where it really names the row differently (Table 5's Transformer is the
NRMS-style news encoder; the ablation figures label each bar by what the figure varies). Probe rows are shown by key.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

# ------------------------------------------------------------------------------------------ shared rows and names
MIXERS = ["transformer", "longformer", "bigbird", "linformer", "linear_transformer", "poolingformer", "performer",
          "fastformer"]  # the paper's rows in its order, with Performer (not in the paper) before Fastformer
NAMES = {"transformer": "Transformer", "longformer": "Longformer", "bigbird": "BigBird", "linformer": "Linformer",
         "linear_transformer": "Linear Transformer", "poolingformer": "Poolingformer",
         "performer": "Performer (not in paper)", "fastformer": "Fastformer",
         "fastformer_official": "Fastformer (released-code layer)",
         "pooling_baseline": "Pooling baseline (no token interaction; not in paper)",
         "fastformer_decoder": "Fastformer, encoder and decoder (not in paper)",
         "plm_nr": "PLM-NR", "fastformer_plm_nr": "Fastformer+PLM-NR"}
CLASSIFICATION_DATASETS = {"amazon": "Amazon", "imdb": "IMDB", "mind_topics": "MIND (topics)"}

# --------------------------------------------------------------------------------- Table 4: text classification
TABLE4_DATASETS = CLASSIFICATION_DATASETS
TABLE4_ROWS = [*MIXERS, "fastformer_official", "pooling_baseline"]
# Paper Table 4 (v5), mean over 5 runs: (Acc, Macro-F) per dataset. Performer is not in the paper.
TABLE4_PAPER = {
    "transformer": {"amazon": (65.32, 42.31), "imdb": (52.04, 42.69), "mind_topics": (80.90, 60.02)},
    "longformer": {"amazon": (65.45, 42.48), "imdb": (52.21, 43.36), "mind_topics": (81.36, 62.59)},
    "bigbird": {"amazon": (66.14, 42.96), "imdb": (53.23, 44.03), "mind_topics": (81.93, 63.58)},
    "linformer": {"amazon": (66.20, 43.13), "imdb": (53.17, 44.34), "mind_topics": (82.16, 63.77)},
    "linear_transformer": {"amazon": (66.12, 43.04), "imdb": (53.09, 44.30), "mind_topics": (82.25, 63.81)},
    "poolingformer": {"amazon": (66.05, 43.00), "imdb": (53.78, 44.52), "mind_topics": (82.46, 64.10)},
    "fastformer": {"amazon": (66.13, 43.23), "imdb": (54.10, 44.65), "mind_topics": (82.34, 63.89)},
}

# ------------------------------------------------------------------------- Table 5: news recommendation on MIND
TABLE5_DATASETS = {"mind_rec": "MIND"}  # one dataset: the table has no per-dataset sections
TABLE5_ROWS = [*MIXERS, "plm_nr", "fastformer_plm_nr"]
TABLE5_NAMES = {**NAMES, "transformer": "Transformer (NRMS-style)"}
TABLE5_PLM_ROWS = {"plm_nr", "fastformer_plm_nr"}  # need a local pretrained checkpoint (PLM_PATH)
# Paper Table 5 (v5); no std reported. Rows without our counterpart (NRMS, FIM, the 5-model ensemble) are listed below.
TABLE5_PAPER = {
    "transformer": (68.22, 33.32, 36.35, 42.23), "longformer": (67.98, 33.04, 36.18, 42.06),
    "bigbird": (68.14, 33.28, 36.30, 42.18), "linformer": (68.02, 33.19, 36.22, 42.10),
    "linear_transformer": (67.76, 32.94, 36.16, 41.97), "poolingformer": (68.54, 33.60, 36.69, 42.60),
    "fastformer": (69.11, 34.25, 37.26, 43.38), "plm_nr": (70.64, 35.39, 38.71, 44.38),
    "fastformer_plm_nr": (71.04, 35.91, 39.16, 45.03),
}
# paper-only rows: shown with the paper's numbers and no run of ours (none exists), under these display names
TABLE5_PAPER_ONLY = {"NRMS": (68.18, 33.29, 36.31, 42.20), "FIM": (68.31, 33.42, 36.47, 42.35),
                     "Fastformer+PLM-NR* (5-model ensemble)": (72.68, 37.45, 41.51, 46.84)}

# ---------------------------------------------------------------------------------------- Table 6: summarization
TABLE6_DATASETS = {"cnndm": "CNN/DailyMail", "pubmed": "PubMed"}
TABLE6_ROWS = [*MIXERS, "fastformer_decoder"]
# Paper Table 6 (v5): (R-1, R-2, R-L) per dataset. The paper does not say which ROUGE package/variant (PAPER.md §2.3).
TABLE6_PAPER = {
    "transformer": {"cnndm": (38.52, 16.04, 35.87), "pubmed": (34.26, 11.88, 31.64)},
    "longformer": {"cnndm": (37.89, 15.46, 35.19), "pubmed": (36.92, 14.34, 33.75)},
    "bigbird": {"cnndm": (38.31, 15.78, 35.60), "pubmed": (37.73, 14.99, 34.51)},
    "linformer": {"cnndm": (37.96, 15.58, 35.34), "pubmed": (37.22, 14.48, 34.02)},
    "linear_transformer": {"cnndm": (37.24, 14.87, 34.64), "pubmed": (36.43, 13.80, 33.21)},
    "poolingformer": {"cnndm": (38.58, 16.16, 36.17), "pubmed": (37.82, 15.15, 34.63)},
    "fastformer": {"cnndm": (38.54, 16.22, 36.21), "pubmed": (38.09, 15.44, 34.81)},
}

# ------------------------------------------------ ablations: paper Figures 3 (interaction), 4 (sharing), redundancy
ABLATION_DATASETS = CLASSIFICATION_DATASETS  # the figures' datasets are Table 4's
# paper values (Acc, Macro-F), v5 Figures 3 and 4 as read in PAPER.md §2.6 ("full" = product / qv+layer)
ABLATION_PAPER = {
    "interaction_concat": {"amazon": (64.47, 40.87), "imdb": (52.44, 42.33), "mind_topics": (80.57, 60.46)},
    "interaction_add": {"amazon": (65.22, 41.89), "imdb": (52.99, 42.99), "mind_topics": (81.34, 62.12)},
    "full": {"amazon": (66.13, 43.23), "imdb": (54.10, 44.65), "mind_topics": (82.34, 63.89)},
    "sharing_none": {"amazon": (65.87, 42.76), "imdb": (53.56, 44.13), "mind_topics": (82.13, 63.52)},
    "sharing_qv": {"amazon": (65.92, 42.98), "imdb": (53.77, 44.25), "mind_topics": (82.10, 63.57)},
    "sharing_qv_head": {"amazon": (65.63, 42.43), "imdb": (53.42, 43.67), "mind_topics": (81.76, 62.32)},
}
# each figure's rows in display order, with the bar label the figure gives them ("full" is named by what it varies)
ABLATION_FIGURES = {
    "Figure 3: interaction between the global vector and keys/values": [
        ("interaction_concat", "Concatenation"), ("interaction_add", "Add"), ("full", "Element-wise product")],
    "Figure 4: parameter sharing": [
        ("sharing_none", "w/o sharing"), ("sharing_qv", "Query-Value"), ("sharing_qv_head", "QV + head-wise"),
        ("full", "QV + layer-wise")],
}
# the review's redundancy rows in display order, with their labels
ABLATION_REDUNDANCY = [("full", "Fastformer (full, paper form)"), ("official", NAMES["fastformer_official"]),
                       ("no_output_transform", "no output transform W_r"),
                       ("global_key_from_k", "no query-key product in k*"),
                       ("no_key_branch", "no key branch (pooling + gating)"), ("mean_pooling", "mean pooling"),
                       ("no_query_residual", "no query residual"), ("pooling_baseline", "pooling baseline mixer")]
# Table 4's runs these figures compare against: recorded row -> ablation row
ABLATION_REFERENCE = {"fastformer": "full", "fastformer_official": "official"}
ABLATION_ROWS = list(dict.fromkeys([k for rows in ABLATION_FIGURES.values() for k, _ in rows]
                                   + [k for k, _ in ABLATION_REDUNDANCY]))
# rows recorded under their own name: configs/ablation/<row>.yaml (+ the pooling_baseline experiments)
ABLATION_VARIANTS = set(ABLATION_ROWS) - set(ABLATION_REFERENCE.values())


def ablation_row(row: str | None) -> str | None:
    """The ablation row of a classification run's recorded row: ``full`` / ``official`` for Table 4's Fastformer
    runs (:data:`ABLATION_REFERENCE`), the row itself for an ablation row, else None (not a run of these tables)."""
    return ABLATION_REFERENCE.get(row, row if row in ABLATION_VARIANTS else None)


# ------------------------------------------------------------------------------------------------------------ probes
PROBE_DATASETS = {"probe_mqar_small": "Associative recall, 2 pairs, 16 symbols (MQAR small)",
                  "probe_mqar": "Multi-query associative recall (MQAR)", "probe_dup": "Duplicate detection (any pair)",
                  "probe_dup_query": "Query matching (does token 0 recur?)",
                  "probe_majority": "Majority token (control)", "probe_listops": "ListOps"}
# the mixers, then the Fastformer switches of the redundancy table (configs/ablation/, over probe/fastformer)
PROBE_ROWS = [*TABLE4_ROWS, *(k for k, _ in ABLATION_REDUNDANCY if k in ABLATION_VARIANTS and k not in TABLE4_ROWS)]
# causal MQAR section (results/probes_causal.md): its runs are selected by data_info.causal; their cfg.data.name is
# one name for Zoology's three (L, pairs) points (configs/data/probe_mqar_zoology_L*.yaml)
CAUSAL_DATASET = "probe_mqar_zoology"
CAUSAL_ROWS = ["transformer", "fastformer", "fastformer_official", "linear_transformer", "pooling_baseline"]
# Zoology (Arora et al. 2023, arXiv 2312.04927), Figure 2: MQAR accuracy vs model dimension at (L, pairs) = (64, 4),
# (128, 8), (256, 16) (and 512), 2-layer models. Attention is at ~100% at every point and width; the paper gives the
# numbers only as a plot, so the table quotes them as read off it.
ZOOLOGY_ATTENTION = "≈100% at every point and every d_model 64-512 (Figure 2, read off the plot; no table given)"


# ------------------------------------------------------------------------------- the tables, as the sweeps see them
Cell = tuple[str, str]  # (dataset, row)


def grid(datasets: Iterable[str], rows: Iterable[str]) -> frozenset[Cell]:
    rows = list(rows)
    return frozenset((d, r) for d in datasets for r in rows)


def _same(row: str | None) -> str | None:
    return row


@dataclass(frozen=True)
class TableRows:
    """A table's cells as its runs fill them: the ``task`` of its runs, every (dataset, row) cell it lists, and the
    row a run's recorded row takes in it (None: not a run of this table)."""
    task: str
    cells: frozenset[Cell]
    row_of: Callable[[str | None], str | None] = _same


# keyed by scripts/make_tables.py's table names (the tables scripts/reproduce.py's STAGE_TABLES feeds)
TABLES = {
    "table4": TableRows("classification", grid(TABLE4_DATASETS, TABLE4_ROWS)),
    "table5": TableRows("newsrec", grid(TABLE5_DATASETS, TABLE5_ROWS)),
    "table6": TableRows("summarization", grid(TABLE6_DATASETS, TABLE6_ROWS)),
    "ablations": TableRows("classification", grid(ABLATION_DATASETS, ABLATION_ROWS), ablation_row),
    "probes": TableRows("probe", grid(PROBE_DATASETS, PROBE_ROWS) | grid([CAUSAL_DATASET], CAUSAL_ROWS)),
}


@dataclass(frozen=True)
class NotRun:
    """Cells of ``table`` that no sweep runs under ``presets``, and why: the only gaps tests/test_table_rows.py
    allows between this module and the sweeps."""
    table: str
    cells: frozenset[Cell]
    reason: str
    presets: tuple[str, ...] = ("quick", "cpu", "paper")


PLM_NOT_SWEPT = NotRun(
    "table5", grid(TABLE5_DATASETS, TABLE5_PLM_ROWS),
    "the PLM rows need a local Hugging Face checkpoint (PLM_PATH; the paper's UniLMv2 is not available here): "
    "configs/sweep/table5.yaml says how to add them, the table marks them 'needs pretrained weights'")
PROBES_NOT_SWEPT = NotRun(
    "probes", grid(["probe_mqar_small", "probe_listops"], PROBE_ROWS),
    "run by hand (`data=probe_mqar_small`, `data=probe_listops`; configs/sweep/probes.yaml): the table titles their "
    "panels when such runs exist; MQAR's swept recipe is configs/sweep/probes_recall.yaml")
CPU_PERFORMER_IMDB_CUT = NotRun(
    "table4", frozenset({("imdb", "performer")}),
    "the cpu waves cut Performer on IMDB (not in the paper; 5.5k tokens/s, ~70 min per IMDB job on 2 cores; "
    "configs/reproduce/reproduce.yaml)", presets=("cpu",))
CPU_ABLATIONS_IMDB_ONLY = NotRun(
    "ablations", grid(["amazon", "mind_topics"], ABLATION_VARIANTS - {"pooling_baseline"}),
    "the cpu preset runs Figures 3-4 and the redundancy variants on IMDB only (issue 19 item 4; "
    "configs/reproduce/reproduce.yaml); the reference rows are Table 4's cpu runs", presets=("cpu",))
NOT_RUN = [PLM_NOT_SWEPT, PROBES_NOT_SWEPT, CPU_PERFORMER_IMDB_CUT, CPU_ABLATIONS_IMDB_ONLY]


def not_run(table: str, preset: str) -> frozenset[Cell]:
    """The cells of ``table`` that :data:`NOT_RUN` says no sweep of ``preset`` runs."""
    return frozenset().union(*(n.cells for n in NOT_RUN if n.table == table and preset in n.presets))
