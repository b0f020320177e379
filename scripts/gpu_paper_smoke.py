"""The paper preset on one GPU (issue 15): does every Table 4-6 cell train on the card, how fast, in how much memory,
and what will the full tables cost?  ``bash scripts/gpu_paper_smoke.sh`` (at most 8 minutes on an H100/H200).

For every cell of ``configs/sweep/table{4,5,6}.yaml`` (dataset x mixer) it composes the real run config --
``experiment=<dataset>/<mixer> preset=paper trainer=gpu``, bf16 autocast -- and runs the real pipeline (task setup,
``fastformer.train.Trainer``) for a fixed small number of optimizer steps (``trainer.limit_train_batches``), then one
evaluation pass (validation, then test, as every run does) on a capped split (``data.max_eval`` /
``data.max_eval_impressions``; for summarization the test pass beam-decodes ``--decodes`` documents). Per cell it
records ms per optimizer step (mean after ``--warmup-steps``; the first step, with its kernel compiles, separately),
tokens/s, peak GPU memory, the evaluation and decoding times, the mixer implementation that ran (``mixer_impl``) and
whether the run finished (``finished`` / ``OOM ...`` / ``failed: <error's first line>`` / ``missing data: ...``).
It then projects the GPU-hours of each full table: steps per epoch at the paper's data size x epochs x seeds x
ms/step (+ the evaluation passes at the measured rate).

Time: a global deadline (``--deadline``, from the start of this script) and a per-run budget (``--run-budget``, from
the end of the run's data setup); cells that cannot start in time read ``skipped: time budget``, a run over its budget
stops with what it measured. Cells run mixer-major (Fastformer and the Transformer of every task first), so a run cut
short still covers every task. The table (``<out>/gpu_paper_<card>.md`` and ``.json``) is rewritten atomically after
every row. Then the paper's Figure 2 grid (``fastformer.bench.run_bench`` = ``make bench`` with the GPU recipe, its
own deadline) writes ``<out>/efficiency_<card>.{md,png,csv}``.

    python scripts/gpu_paper_smoke.py                                  # on the GPU machine (see the .sh wrapper)
    python scripts/gpu_paper_smoke.py --device cpu --tiny --fixtures   # CPU smoke of this script (make test does it)
    python scripts/gpu_paper_smoke.py --prepare-carry .gpu_carry       # here: the Python packages the GPU image lacks
                                                                       # + the real data samples, to carry there
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT))

TABLES = {"table4": "Table 4 (classification)", "table5": "Table 5 (news recommendation)",
          "table6": "Table 6 (summarization)"}
FIRST_MIXERS = ("fastformer", "transformer")  # run first for every task (a cut-short run still covers all tasks)
#: Full training-set sizes (examples, or MIND training impressions) where the paper preset's config cannot give them
#: (the local files are samples): ../shared/PAPER.md Tables 2-3. Classification uses the config's data.split_sizes.
PAPER_DATA = {
    "mind_rec": {"train": 2_232_748, "val": 376_471, "test": 376_471, "unit": "impressions",
                 "source": "PAPER.md Table 2 (MINDlarge: 2,232,748 train impressions; the test pass runs on dev, "
                           "376,471, as MINDlarge test labels are hidden) x clicks per impression of the local data"},
    "cnndm": {"train": 287_100, "val": 13_400, "test": 11_500, "unit": "documents",
              "source": "PAPER.md Table 3 (287.1k / 13.4k / 11.5k)"},
    "pubmed": {"train": 119_924, "val": 6_633, "test": 6_658, "unit": "documents",
               "source": "Cohan et al. split 119,924 / 6,633 / 6,658 (PAPER.md: Table 3's 108.5k/13.6k/13.6k repeats "
                         "the IMDB row)"},
}
#: Python packages the GPU image lacks (device KINDS.md): pure Python, copied from this venv by --prepare-carry
DATA_DIRS = ("amazon", "imdb", "mind", "cnn_dailymail", "pubmed")  # dataset folders under a data root
CARRY_PACKAGES = ("hydra", "omegaconf", "antlr4", "rouge_score", "nltk")
CARRY_LIMIT_MB = 56  # the device call carries at most 64 MiB with the working tree (~3 MB)


class OverBudget(RuntimeError):
    """A run passed its time budget: it stops and keeps what it measured."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (the smoke run) | cpu (a test of this script)")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"], help="trainer.precision")
    p.add_argument("--tiny", action="store_true", help="tiny model / lengths / data overrides (CPU test)")
    p.add_argument("--fixtures", action="store_true", help="generate fixture data (fastformer.data.fixtures + tiny "
                   "summarization files) in the work dir and use it as the data root")
    p.add_argument("--data-root", default=None, help="default: $DATA_ROOT, else .gpu_carry/data, data/ or "
                   "../shared/data, the first that holds data")
    p.add_argument("--tables", default="table4,table5,table6")
    p.add_argument("--datasets", default="", help="only these datasets (comma-separated; default: every one)")
    p.add_argument("--mixers", default="", help="only these mixers (default: every mixer of the sweep files)")
    p.add_argument("--steps", type=int, default=12, help="optimizer steps per run (trainer.limit_train_batches)")
    p.add_argument("--warmup-steps", type=int, default=2, help="first steps left out of ms/step (compiles, caches)")
    p.add_argument("--eval-examples", type=int, default=512, help="examples / impressions per evaluation split")
    p.add_argument("--decodes", type=int, default=8, help="summarization: documents per evaluation split (the test "
                   "pass beam-decodes them; validation passes are NLL only)")
    p.add_argument("--run-budget", type=float, default=30.0, help="seconds per run after its data setup")
    p.add_argument("--min-run", type=float, default=8.0, help="no run starts with less time than this left")
    p.add_argument("--deadline", type=float, default=450.0, help="seconds for the whole script (rows + grid)")
    p.add_argument("--bench-s", type=float, default=110.0, help="seconds kept for the efficiency grid (0: no grid)")
    p.add_argument("--bench-lengths", default="", help="grid lengths (default: the paper's 128 ... 65536)")
    p.add_argument("--bench-mixers", default="fastformer,fastformer[triton],transformer,longformer,bigbird,linformer,"
                   "linear_transformer,poolingformer,performer,pooling_baseline")
    p.add_argument("--out", type=Path, default=ROOT / "results")
    p.add_argument("--work", type=Path, default=None, help="run dirs and data caches (default: a temp dir, removed)")
    p.add_argument("--prepare-carry", type=Path, default=None, metavar="DIR",
                   help="write DIR/site (packages) and DIR/data (real samples) to carry to the GPU machine, then exit")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------------- environment
def card_name(device) -> str:
    import torch
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def versions(device) -> list[tuple[str, str]]:
    import torch
    try:
        triton = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        triton = "not installed"
    rows = [("card", card_name(device)), ("torch", torch.__version__), ("CUDA", str(torch.version.cuda)),
            ("triton", triton), ("Python", platform.python_version())]
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        rows[0] = ("card", f"{p.name} (sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB, "
                           f"{p.multi_processor_count} SMs)")
    else:
        rows[0] = ("card", f"none: CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores) -- a "
                           "smoke test of this script, not a measurement")
    return rows


def resolve_data_root(arg: str | None) -> Path:
    cands = [arg] if arg else [os.environ.get("DATA_ROOT"), ROOT / ".gpu_carry" / "data", ROOT / "data",
                               ROOT.parent / "shared" / "data"]
    for c in cands:
        if c and Path(c).is_dir() and any((Path(c) / sub).exists() for sub in DATA_DIRS):
            return Path(c).resolve()
    return Path(arg or os.environ.get("DATA_ROOT") or ROOT / "data").resolve()


# ---------------------------------------------------------------------------------------------------- cells
def sweep_cells(tables: list[str]) -> list[tuple[str, str, str]]:
    """(table, dataset, mixer) of every experiment in configs/sweep/<table>.yaml."""
    from omegaconf import OmegaConf
    cells = []
    for t in tables:
        exps = OmegaConf.load(ROOT / "configs" / "sweep" / f"{t}.yaml").hydra.sweeper.params.experiment
        for e in (e.strip() for e in str(exps).replace("\n", "").split(",") if e.strip()):
            ds, mixer = e.split("/")
            cells.append((t, ds, mixer))
    return cells


def ordered(cells: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """mixer-major: every task's Fastformer, then every task's Transformer, then the other mixers in sweep order."""
    mixers = list(dict.fromkeys([m for m in FIRST_MIXERS if any(c[2] == m for c in cells)] + [c[2] for c in cells]))
    return sorted(cells, key=lambda c: (mixers.index(c[2]), cells.index(c)))


def n_seeds() -> int:
    from omegaconf import OmegaConf
    return len(str(OmegaConf.load(ROOT / "configs" / "reproduce" / "reproduce.yaml").seeds.paper).split(","))


# ---------------------------------------------------------------------------------------------------- overrides
def data_overrides(cfg, root: Path) -> tuple[list[str], str | None]:
    """(extra data overrides, missing-data reason or None) for the composed config of one cell."""
    task, d = cfg.task.name, cfg.data
    if task == "summarization":  # full dataset files (train*) or the real sample file, else missing
        folder = root / str(d.subdir)
        files = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        if any(f.startswith("train") for f in files):
            return [], None
        if d.get("sample_file") and d.sample_file in files:
            return ["data.files=${data.sample_file}"], None
        return [], f"no train* file and no {d.get('sample_file')} in {folder}"
    return [], None


def cell_overrides(ds: str, mixer: str, a, root: Path, work: Path, task: str) -> list[str]:
    o = [f"experiment={ds}/{mixer}", "preset=paper", "trainer=gpu", f"trainer.device={a.device}",
         f"trainer.precision={a.precision}", "trainer.max_epochs=1", f"trainer.limit_train_batches={a.steps}",
         "trainer.progress_bar=false", "trainer.log_every=1000000", "trainer.resume=false", "logger=none",
         f"data.root={root}", "data.download=false", f"paths.cache_dir={work / 'cache'}",
         f"paths.log_dir={work / 'logs'}"]
    if task == "classification":
        o += [f"data.max_eval={a.eval_examples}", f"data.cache_dir={work / 'cache' / 'classification'}"]
    elif task == "newsrec":
        o += [f"data.max_eval_impressions={a.eval_examples}"]
    elif task == "summarization":
        o += [f"data.max_eval={a.decodes}", "task.val_rouge_docs=0"]
    if a.tiny:
        o += ["model.d_model=32", "model.n_heads=4"]
        if task == "classification":
            o += ["data.max_len=64", "task.batch_size=8", "task.eval_batch_size=16"]
        elif task == "newsrec":
            o += ["task.batch_size=8", "data.synthetic.n_news=120", "data.synthetic.n_users=60",
                  "data.synthetic.train=200", "data.synthetic.dev=40", "data.synthetic.test=40"]
        elif task == "summarization":
            o += ["data.max_src_len=128", "data.max_tgt_len=12", "data.vocab_size=400", "task.batch_size=4",
                  "task.eval_batch_size=4", "task.generate.min_len=2", "model.dec_layers=1"]
    return o


# ---------------------------------------------------------------------------------------------------- one run
class Hooks:
    """Timing hooks on one task instance: step start times (synchronised), tokens, evaluation and decoding times;
    the per-run budget; the data setup (reused between cells with the same data and task config)."""

    def __init__(self, task, device, memo: dict, key: str):
        import torch
        self.task, self.device, self.sync = task, device, (
            (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None))
        self.starts, self.tokens, self.evals, self.decodes = [], [], [], []
        self.end_steps = None
        self.budget_end = math.inf
        self.phase, self.setup_s, self.setup_reused = "setup", 0.0, False
        setup, step, evaluate = task.setup, task.training_step, task.evaluate
        decode = getattr(task, "decode", None)  # summarization: beam search, timed apart from the evaluation

        def setup_hook():
            t0 = time.perf_counter()
            if key in memo:
                keep = {k: task.__dict__[k] for k in ("cfg", "run_dir") if k in task.__dict__}
                task.__dict__.update(memo[key])
                task.__dict__.update(keep)
                self.setup_reused = True
            else:
                setup()
                memo[key] = {k: v for k, v in task.__dict__.items()
                             if k not in ("cfg", "run_dir", "setup", "training_step", "evaluate", "decode",
                                          "_loader_fn", "_datasets")}
            self.setup_s = time.perf_counter() - t0
            self.budget_end = min(self.budget_end, time.perf_counter() + self.run_budget)
            self.phase = "training step 1"

        def step_hook(model, batch):
            self.sync()
            now = time.perf_counter()
            if now > self.budget_end:
                self.end_steps = now  # the end of the last step that ran
                raise OverBudget(f"over the run budget after {len(self.starts)} steps")
            self.starts.append(now)
            self.phase = f"training step {len(self.starts)}"
            loss, n_tok = step(model, batch)
            self.tokens.append(int(n_tok))
            return loss, n_tok

        def evaluate_hook(model, split, *args):
            self.sync()
            t0 = time.perf_counter()
            if self.end_steps is None:
                self.end_steps = t0  # the Trainer synchronises, then evaluates: the end of the last step
            if t0 > self.budget_end:
                raise OverBudget(f"over the run budget before the evaluation ({len(self.starts)} steps done)")
            self.phase = "evaluation"
            n_dec = len(self.decodes)
            out = evaluate(model, split, *args)
            self.sync()
            dec_s = sum(s for s, _ in self.decodes[n_dec:])
            self.evals.append((time.perf_counter() - t0 - dec_s, len(task.dataset(split))))
            return out

        def decode_hook(model, batches):
            self.sync()
            t0 = time.perf_counter()
            out = decode(model, batches)
            self.sync()
            self.decodes.append((time.perf_counter() - t0, len(out)))
            return out

        self.run_budget = math.inf
        task.setup, task.training_step, task.evaluate = setup_hook, step_hook, evaluate_hook
        if decode is not None:
            task.decode = decode_hook

    def step_times(self) -> list[float]:
        ends = self.starts[1:] + ([self.end_steps] if self.end_steps is not None else [])
        return [e - s for s, e in zip(self.starts, ends)]


def fmt_err(err: BaseException) -> str:
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}"


def run_cell(table: str, ds: str, mixer: str, a, root: Path, work: Path, memo: dict, budget: float, seeds: int,
             device) -> dict:
    import torch
    from hydra import compose
    from omegaconf import OmegaConf

    from fastformer.bench.timing import is_oom
    from fastformer.data.download import DataUnavailableError
    from fastformer.tasks import build_task
    from fastformer.train.logging import build_logger
    from fastformer.train.trainer import Trainer

    row = {"table": table, "dataset": ds, "mixer": mixer, "status": "", "steps": 0}
    t_row = time.perf_counter()
    paper = compose("train", overrides=[f"experiment={ds}/{mixer}", "preset=paper", "trainer=gpu",
                                        f"data.root={root}"])  # the full run's settings, for the projection
    task_name = paper.task.name
    extra, missing = data_overrides(paper, root)
    row.update(task=task_name, epochs=int(paper.trainer.max_epochs), batch=int(paper.task.batch_size),
               seeds=seeds, val_rouge_docs=int(paper.task.get("val_rouge_docs") or 0),
               max_len=int(paper.data.get("max_len") or paper.data.get("max_src_len") or paper.data.max_title_len))
    if task_name == "classification":
        tr, va, te = (int(v) for v in paper.data.split_sizes)
        row["paper_data"] = {"train": tr, "val": va, "test": te, "unit": "examples",
                             "source": "the paper preset's data.split_sizes (Table 1"
                                       + ("; the paper's 10-class IMDB has 108.5k / 13.6k / 13.6k)" if ds == "imdb"
                                          else ")")}
    else:
        row["paper_data"] = dict(PAPER_DATA[ds])
    if missing:
        row["status"] = f"missing data: {missing}"
        return row
    cfg = compose("train", overrides=cell_overrides(ds, mixer, a, root, work, task_name) + extra)
    run_dir = work / "runs" / f"{ds}-{mixer}"
    shutil.rmtree(run_dir, ignore_errors=True)
    key = json.dumps(OmegaConf.to_container(cfg.data, resolve=True), sort_keys=True, default=str) + json.dumps(
        OmegaConf.to_container(cfg.task, resolve=True), sort_keys=True, default=str)
    task = hooks = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        task = build_task(cfg)
        hooks = Hooks(task, device, memo, key)
        hooks.run_budget = budget
        metrics = Trainer(cfg, task, run_dir, build_logger(cfg, str(run_dir))).fit()
        row["status"] = "finished"
        row["mixer_impl"] = metrics.get("mixer_impl") or {}
        row["params"] = metrics.get("params")
        test = metrics.get("test") or {}
        mon = {"classification": "acc", "newsrec": "auc", "summarization": "rouge1"}.get(task_name)
        if mon in test:
            row["test_metric"] = f"{mon} {test[mon]:.1f}"
        if task_name == "newsrec":
            imps = len(task.data.impressions["train"])
            row["clicks_per_impression"] = len(task.dataset("train")) / max(imps, 1)
    except OverBudget as err:
        row["status"] = f"over run budget ({budget:.0f} s): {err}"
    except Exception as err:  # noqa: BLE001 -- recorded in the table, the next cell runs
        phase = hooks.phase if hooks is not None else "setup"
        if phase == "setup" and isinstance(err, (DataUnavailableError, FileNotFoundError)):
            row["status"] = f"missing data: {fmt_err(err)}"
        elif is_oom(err):
            row["status"] = f"OOM in {phase}"
        else:
            row["status"] = f"failed in {phase}: {fmt_err(err)}"
    finally:
        if hooks is not None:
            times = hooks.step_times()
            w = a.warmup_steps if len(times) > a.warmup_steps else 0
            row["steps"] = len(hooks.starts)
            row["setup_s"], row["setup_reused"] = hooks.setup_s, hooks.setup_reused
            if times:
                row["first_step_ms"] = times[0] * 1e3
                row["ms_per_step"] = 1e3 * sum(times[w:]) / len(times[w:])
                row["tokens_per_s"] = sum(hooks.tokens[w:len(times)]) / max(sum(times[w:]), 1e-12)
            if hooks.evals:
                row["eval_s"] = sum(s for s, _ in hooks.evals)
                row["eval_s_per_example"] = min(s / max(n, 1) for s, n in hooks.evals)
            if hooks.decodes:
                row["decode_s_per_doc"] = sum(s for s, _ in hooks.decodes) / max(sum(n for _, n in hooks.decodes), 1)
                row["decoded_docs"] = sum(n for _, n in hooks.decodes)
        if device.type == "cuda":
            row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        else:
            row["peak_mem_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process max RSS
        del task, hooks
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        row["wall_s"] = time.perf_counter() - t_row
    project(row)
    return row


def project(row: dict) -> None:
    """GPU-hours of this cell's full runs (every seed): training steps + evaluation passes at the measured rates."""
    if row.get("ms_per_step") is None:
        return
    d = row["paper_data"]
    train = d["train"] * (row.get("clicks_per_impression") or 1.0)
    row["steps_per_epoch"] = math.ceil(train / row["batch"])
    E, S = row["epochs"], row["seeds"]
    row["proj_train_h"] = row["steps_per_epoch"] * E * S * row["ms_per_step"] / 3.6e6
    if row.get("eval_s_per_example") is not None:  # validation each epoch and once more at the best, then test
        ev = row["eval_s_per_example"] * (d["val"] * (E + 1) + d["test"])
        ev += (row.get("decode_s_per_doc") or 0.0) * (row["val_rouge_docs"] * (E + 1) + d["test"])
        row["proj_eval_h"] = S * ev / 3600


# ---------------------------------------------------------------------------------------------------- output
def _f(v, fmt: str, none: str = "—") -> str:
    return none if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def impl_cell(r: dict) -> str:
    mi = r.get("mixer_impl")
    if not mi:
        return "—"
    s = "+".join(mi.get("ran") or []) or "?"
    return s + (" (fallback)" if mi.get("fallbacks") else "")


def render(rows: list[dict], header: list[tuple[str, str]], a, total_cells: int, done: bool) -> str:
    lines = [f"# The paper preset on {a.card_label}: every Table 4-6 cell on the card (smoke run)", ""]
    lines += [f"- **{k}**: {v}" for k, v in header]
    n_ok = sum(r["status"] == "finished" for r in rows)
    lines += [f"- **progress**: {len(rows)} of {total_cells} cells recorded, {n_ok} finished"
              + ("" if done else " (run in progress or cut short: this file is rewritten after every row)"), ""]
    lines += ["| table | dataset | mixer | status | steps | ms/step | 1st step ms | tokens/s | peak GiB | eval s | "
              "decode s/doc | impl | test (capped) | proj. GPU-h |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        proj = None if r.get("proj_train_h") is None else r["proj_train_h"] + (r.get("proj_eval_h") or 0)
        lines.append(
            f"| {r['table']} | {r['dataset']} | {r['mixer']} | {r['status']} | {r.get('steps', 0)} | "
            f"{_f(r.get('ms_per_step'), '.1f')} | {_f(r.get('first_step_ms'), '.0f')} | "
            f"{_f(r.get('tokens_per_s'), ',.0f')} | {_f(r.get('peak_mem_gib'), '.2f')} | "
            f"{_f(r.get('eval_s'), '.1f')} | "
            f"{_f(r.get('decode_s_per_doc'), '.3f')} | {impl_cell(r)} | {r.get('test_metric', '—')} | "
            f"{_f(proj, '.2f')} |")
    lines += ["", "## Projected GPU-hours of the full tables", "",
              "| table | cells measured | GPU-h training | GPU-h evaluation | GPU-h total |", "|---|---|---|---|---|"]
    grand, complete = 0.0, True
    for t, title in TABLES.items():
        rs = [r for r in rows if r["table"] == t]
        n_cells = sum(1 for c in a.cells if c[0] == t)
        if not n_cells:
            continue
        m = [r for r in rs if r.get("proj_train_h") is not None]
        tr, ev = sum(r["proj_train_h"] for r in m), sum(r.get("proj_eval_h") or 0 for r in m)
        grand += tr + ev
        complete &= len(m) == n_cells
        lo = "" if len(m) == n_cells else ">= "
        lines.append(f"| {title} | {len(m)} of {n_cells} | {lo}{tr:.1f} | {lo}{ev:.1f} | {lo}{tr + ev:.1f} |")
    lines.append(f"| **all three** | | | | **{'' if complete else '>= '}{grand:.1f}** |")
    lines += ["", "Projection per cell: steps per epoch = ceil(training examples / batch size) x the paper preset's "
              "epochs x seeds x the measured ms/step (mean after the warm-up steps), plus the evaluation passes "
              "(validation every epoch and once more at the best epoch, then test; summarization also beam-decodes "
              "`task.val_rouge_docs` validation documents per pass and every test document) at the measured "
              "per-example rates. Data sizes:"]
    seen = {}
    for r in rows:
        if r["dataset"] not in seen and r.get("epochs"):
            d = r["paper_data"]
            seen[r["dataset"]] = (f"- {r['dataset']}: {d['train']:,} / {d['val']:,} / {d['test']:,} {d['unit']} "
                                  f"(train / val / test) -- {d['source']}"
                                  + (f"; clicks per impression {r['clicks_per_impression']:.2f} from the local data"
                                     if r.get("clicks_per_impression") else "")
                                  + f"; batch {r['batch']}, {r['epochs']} epochs, {r['seeds']} seeds")
    lines += list(seen.values())
    lines += ["", "Not in the projection: checkpoint writes, data preparation (tokenisation is cached per dataset), "
              "and the different sequence lengths of the full data (the local samples' length distribution is used)."
              " `ms/step` includes the data loading of the next batch; `1st step ms` includes kernel compiles (and "
              "impl=auto's numeric check). `peak GiB`: torch.cuda.max_memory_allocated over the run (CPU: the "
              "process's max RSS). `impl`: the fastformer mixer's implementation that ran (metrics.json "
              "`mixer_impl`; `(fallback)`: see the .json for the reason)."]
    return "\n".join(lines) + "\n"


def write(rows, header, a, out_md: Path, total: int, done: bool) -> None:
    from fastformer.utils import atomic_write_json, atomic_write_text
    atomic_write_text(out_md, render(rows, header, a, total, done))
    atomic_write_json(out_md.with_suffix(".json"), {"header": dict(header), "rows": rows, "done": done})


# ---------------------------------------------------------------------------------------------------- grid
def efficiency_grid(a, device, card: str, seconds: float) -> dict | None:
    from omegaconf import OmegaConf

    from fastformer.bench import run_bench
    cfg = OmegaConf.load(ROOT / "configs" / "bench.yaml")
    cfg.pop("hydra", None)
    cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg.update(out_dir=str(a.out.resolve()), stem=f"efficiency_{card}", deadline_s=max(seconds, 1.0),
               mixers=[m for m in a.bench_mixers.split(",") if m],
               note=f"scripts/gpu_paper_smoke.py: the paper's Figure 2 grid on the card of gpu_paper_{card}.md, "
                    f"with a {seconds:.0f} s deadline for the whole grid")
    if a.bench_lengths:
        cfg["lengths"] = [int(v) for v in a.bench_lengths.split(",")]
    if device.type == "cuda":  # the GPU recipe of configs/bench.yaml, with fewer timed calls to fit the deadline
        cfg.update(device="cuda", dtype="auto", tokens_per_batch=65536, max_length=65536, budget_s=2.0, warmup=2,
                   iters=5, threads=None)
    else:
        cfg.update(device="cpu", tokens_per_batch=64 if a.tiny else 8192, lengths=cfg.get("lengths") or [16, 32],
                   budget_s=5.0, warmup=1, iters=1, threads=1)
        if a.tiny:
            cfg.update(d_model=32, n_heads=4)
    return run_bench(cfg)


# ---------------------------------------------------------------------------------------------------- data
def write_fixture_data(root: Path) -> Path:
    """Classification / MIND fixtures (fastformer.data.fixtures) + tiny CNN/DM and PubMed sample files."""
    import csv
    import gzip

    from fastformer.data.fixtures import FILLER, write_all_fixtures
    write_all_fixtures(root, n_per_class=8)

    def doc(i: int, n: int = 60) -> tuple[str, str]:
        words = [FILLER[(i * 7 + j * 3) % len(FILLER)] for j in range(n)]
        sents = [" ".join(words[k:k + 10]).capitalize() + "." for k in range(0, n, 10)]
        return " ".join(sents), "\n".join(sents[:2])
    (root / "cnn_dailymail").mkdir(parents=True, exist_ok=True)
    with gzip.open(root / "cnn_dailymail" / "validation_sample.csv.gz", "wt", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["article", "highlights", "id"])
        w.writeheader()
        w.writerows({"article": doc(i)[0], "highlights": doc(i)[1], "id": f"c{i}"} for i in range(40))
    (root / "pubmed").mkdir(parents=True, exist_ok=True)
    with gzip.open(root / "pubmed" / "sumpubmed_sample.jsonl.gz", "wt", encoding="utf-8") as f:
        for i in range(40):
            art, summ = doc(i + 100, 90)
            f.write(json.dumps({"article": art, "abstract": summ.replace("\n", " "), "article_id": f"p{i}"}) + "\n")
    return root


def prepare_carry(dest: Path) -> None:
    """DEST/site: the pure-Python packages the GPU image lacks (copied from this interpreter's site-packages);
    DEST/data: the real data samples of ../shared/data (PubMed trimmed to fit), so the GPU run trains on real text.
    DEST must be git-ignored (.gitignore lists .gpu_carry/) and named in the device call's ``carry``."""
    import gzip
    import importlib.util
    dest = dest if dest.is_absolute() else ROOT / dest
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "site").mkdir(parents=True)
    for name in CARRY_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"--prepare-carry: package {name} is not installed here")
        shutil.copytree(list(spec.submodule_search_locations)[0], dest / "site" / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "test", "tests"))
    src = ROOT.parent / "shared" / "data"
    if src.is_dir():
        for sub in DATA_DIRS[:-1]:
            if (src / sub).is_dir():
                shutil.copytree(src / sub, dest / "data" / sub)
        pub = src / "pubmed" / "sumpubmed_sample.jsonl.gz"
        if pub.exists():  # 25 MB: the first 1,000 of 3,000 articles (the folder then holds one file, as the
            (dest / "data" / "pubmed").mkdir(parents=True)  # smoke's data.files=${data.sample_file} expects)
            with gzip.open(pub, "rt", encoding="utf-8") as f, \
                    gzip.open(dest / "data" / "pubmed" / pub.name, "wt", encoding="utf-8") as g:
                for i, line in enumerate(f):
                    if i >= 1000:
                        break
                    g.write(line)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) / 2**20
    ignored = subprocess.run(["git", "check-ignore", "-q", str(dest)], cwd=ROOT).returncode == 0
    if not ignored:  # .gitignore lists .gpu_carry/; another folder must be ignored too (carry takes ignored paths)
        print(f"warning: {dest} is not git-ignored: add it to .git/info/exclude before carrying it")
    print(f"wrote {dest} ({size:.1f} MiB; limit {CARRY_LIMIT_MB} MiB beside the working tree); carry it: "
          f"run(carry=['{dest.relative_to(ROOT).as_posix()}'], command='bash scripts/gpu_paper_smoke.sh')")
    if size > CARRY_LIMIT_MB:
        raise SystemExit(f"{dest} is {size:.1f} MiB > {CARRY_LIMIT_MB} MiB: trim the data")


# ---------------------------------------------------------------------------------------------------- main
def main(argv=None) -> Path:
    a = parse_args(argv)
    if a.prepare_carry is not None:
        prepare_carry(a.prepare_carry)
        return a.prepare_carry
    t0 = time.perf_counter()
    import torch
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_paper_smoke: --device cuda needs a CUDA GPU (use --device cpu --tiny for a smoke test)")
    a.card_label = card_name(device)
    card = slug(a.card_label)
    a.out.mkdir(parents=True, exist_ok=True)
    tmp = None
    if a.work is None:
        tmp = tempfile.mkdtemp(prefix="gpu_paper_smoke_")
        a.work = Path(tmp)
    root = write_fixture_data(a.work / "fixture_data") if a.fixtures else resolve_data_root(a.data_root)
    cells = sweep_cells([t for t in a.tables.split(",") if t])
    dsets, mixers = ({v for v in s.split(",") if v} for s in (a.datasets, a.mixers))
    a.cells = ordered([c for c in cells if (not dsets or c[1] in dsets) and (not mixers or c[2] in mixers)])
    seeds = n_seeds()
    deadline = t0 + a.deadline
    rows_deadline = deadline - (a.bench_s if a.bench_s > 0 else 0.0)
    header = versions(device) + [
        ("date", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("git", __import__("fastformer.utils", fromlist=["git_sha"]).git_sha()),
        ("runs", f"preset=paper trainer=gpu trainer.device={a.device} trainer.precision={a.precision}"
                 f"{' + tiny model/data overrides (CPU smoke)' if a.tiny else ''}; {a.steps} optimizer steps "
                 f"(trainer.limit_train_batches; ms/step leaves out the first {a.warmup_steps}), one evaluation "
                 f"pass on {a.eval_examples} examples / impressions per split (summarization: {a.decodes} documents, "
                 "beam-decoded in the test pass)"),
        ("data", f"{root}" + (" (generated fixtures)" if a.fixtures else "")),
        ("time", f"deadline {a.deadline:.0f} s for the script ({a.bench_s:.0f} s of it for the efficiency grid), "
                 f"{a.run_budget:.0f} s per run after its data setup"),
        ("command", "python scripts/gpu_paper_smoke.py " + " ".join(argv if argv is not None else sys.argv[1:])),
    ]
    out_md = a.out / f"gpu_paper_{card}.md"
    rows: list[dict] = []
    memo: dict = {}
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
            for table, ds, mixer in a.cells:
                left = rows_deadline - time.perf_counter()
                if left < a.min_run:
                    rows.append({"table": table, "dataset": ds, "mixer": mixer, "status": "skipped: time budget",
                                 "paper_data": PAPER_DATA.get(ds, {"train": 0, "val": 0, "test": 0, "unit": "",
                                                                   "source": "not run"}),
                                 "batch": 0, "epochs": 0, "seeds": seeds})
                else:
                    r = run_cell(table, ds, mixer, a, root, a.work, memo, min(a.run_budget, left), seeds, device)
                    rows.append(r)
                    print(f"[{time.perf_counter() - t0:5.0f} s] {table} {ds}/{mixer}: {r['status']}; "
                          f"{_f(r.get('ms_per_step'), '.1f')} ms/step, {_f(r.get('peak_mem_gib'), '.2f')} GiB, "
                          f"{r.get('wall_s', 0):.1f} s", flush=True)
                write(rows, header, a, out_md, len(a.cells), False)
        write(rows, header, a, out_md, len(a.cells), True)
        memo.clear()
        gc.collect()
        if a.bench_s > 0:
            left = deadline - time.perf_counter()
            if left > 5:
                efficiency_grid(a, device, card, left - 5)
            else:
                print("efficiency grid skipped: no time left", flush=True)
    finally:
        GlobalHydra.instance().clear()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {out_md} in {time.perf_counter() - t0:.0f} s", flush=True)
    return out_md


if __name__ == "__main__":
    main()
