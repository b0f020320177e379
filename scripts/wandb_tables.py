"""Log every results table (csv -> wandb.Table) and figure (png -> wandb.Image) into one W&B "tables" run per preset.

    python scripts/wandb_tables.py [--preset quick] [--results results] [--dir logs/wandb_tables]

``make wandb-tables`` runs it. Offline by default like the training runs (``WANDB_MODE=online`` to stream; or
``make wandb-sync`` later). The run id is ``tables-<preset>``, so re-running updates the same W&B run; the markdown
of each table (with its provenance line) goes into the run's summary as text, and the files as an artifact. Tables
kept as markdown only (results/kernels_static.md, the GPU reports) are parsed: one wandb.Table per pipe table.
A table generated for another preset (its markdown title says ``(preset: paper)``, say) is left out of this preset's
run and named; tables without a preset (efficiency, kernels) go into every one.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def table_preset(md: Path) -> str | None:
    """The preset a results table was generated for (``# Table 4: ... (preset: quick)``), or None."""
    try:
        with open(md) as f:
            first = f.readline()
    except OSError:
        return None
    m = re.search(r"\(preset:\s*([\w-]+)\)", first)
    return m.group(1) if m else None


def md_tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """The pipe tables of a markdown file: (heading above it, header, rows), cells stripped, in file order."""
    out, heading, block = [], "", []

    def flush():
        if len(block) >= 2 and set(block[1].replace("|", "").strip()) <= set("-: "):
            cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in block]
            out.append((heading, cells[0], cells[2:]))
        block.clear()

    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            block.append(line)
            continue
        flush()
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
    flush()
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40] or "table"


def log_tables(results: Path, preset: str, out_dir: Path, *, project: str = "fastformer-repro",
               mode: str | None = None) -> dict[str, list[str]]:
    """Log ``results/*.csv`` and ``results/*.png`` of ``preset``; returns the logged (and skipped) names per kind."""
    import pandas as pd
    import wandb

    other: dict[str, str] = {}  # stem -> the preset its table was generated for (not logged here)
    for md in sorted(results.glob("*.md")):
        p = table_preset(md)
        if p is not None and p != preset:
            other[md.stem] = p
    for png in [f.stem for f in results.glob("*.png")]:  # a figure goes with the table its stem starts with
        owner = max((s for s in other if png == s or png.startswith(s + "_")), key=len, default=None)
        if owner:
            other[png] = other[owner]

    out_dir.mkdir(parents=True, exist_ok=True)
    mode = mode or os.environ.get("WANDB_MODE", "offline")
    run = wandb.init(project=project, id=f"tables-{preset}", resume="allow", name=f"tables ({preset})",
                     group="tables", job_type="tables", tags=["tables", preset], dir=str(out_dir), mode=mode,
                     config={"preset": preset, "results": str(results)}, reinit="finish_previous")
    logged: dict[str, list[str]] = {"tables": [], "figures": [], "skipped": sorted(other)}
    payload = {}
    for csv in sorted(results.glob("*.csv")):
        if csv.stem in other:
            continue
        frame = pd.read_csv(csv, keep_default_na=False)
        payload[f"tables/{csv.stem}"] = wandb.Table(dataframe=frame.astype(str) if frame.empty else frame)
        logged["tables"].append(csv.stem)
        md = csv.with_suffix(".md")
        if md.is_file():
            run.summary[f"markdown/{csv.stem}"] = md.read_text()
    for md in sorted(results.glob("*.md")):  # tables kept as markdown only (the kernel and GPU reports)
        if md.with_suffix(".csv").is_file() or md.stem in other:
            continue
        text = md.read_text()
        run.summary[f"markdown/{md.stem}"] = text
        if md.stem == "README":  # the index of results/, not a table
            continue
        found = md_tables(text)
        for i, (heading, header, rows) in enumerate(found):
            key = f"tables/{md.stem}" if len(found) == 1 else f"tables/{md.stem}/{i + 1}_{_slug(heading)}"
            width = len(header)
            payload[key] = wandb.Table(columns=header, data=[(r + [""] * width)[:width] for r in rows])
            logged["tables"].append(key.removeprefix("tables/"))
    for png in sorted(results.glob("*.png")):
        if png.stem in other:
            continue
        payload[f"figures/{png.stem}"] = wandb.Image(str(png), caption=png.name)
        logged["figures"].append(png.stem)
    run.log(payload)
    art = wandb.Artifact(f"results-{preset}", type="results")
    for f in sorted(results.glob("*")):
        if f.suffix in (".csv", ".md", ".png") and f.stem not in other:
            art.add_file(str(f))
    run.log_artifact(art)
    run.finish()
    return logged


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--results", default=str(ROOT / "results"))
    ap.add_argument("--dir", default=None, help="W&B dir (default: logs/wandb_tables/<preset>)")
    ap.add_argument("--project", default="fastformer-repro")
    args = ap.parse_args(argv)
    results = Path(args.results)
    if not any(results.glob("*.csv")):
        ap.error(f"no tables (*.csv) in {results}; run `make tables` or `make reproduce-table` first")
    if not any(table_preset(c.with_suffix(".md")) == args.preset for c in results.glob("*.csv")):
        found = sorted({p for c in results.glob("*.csv") if (p := table_preset(c.with_suffix(".md")))})
        ap.error(f"no table in {results} was generated for preset {args.preset!r} (found: {found}); run "
                 f"`make reproduce-table PRESET={args.preset}` first, or pick --preset from those")
    logged = log_tables(results, args.preset, Path(args.dir or ROOT / "logs" / "wandb_tables" / args.preset),
                        project=args.project)
    if logged["skipped"]:
        print(f"left out (generated for another preset than {args.preset}): {', '.join(logged['skipped'])}")
    print(f"logged {len(logged['tables'])} tables ({', '.join(logged['tables'])}) and {len(logged['figures'])} "
          f"figures ({', '.join(logged['figures'])}) into W&B run tables-{args.preset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
