"""Export a classification run as a Hugging Face folder.   python scripts/export_hf.py <run dir> [out dir] [--check]

Writes <out dir> (default <run dir>/hf): model.safetensors + config.json (FastformerForSequenceClassification, the
run's best checkpoint), the run's vocabulary as a tokenizer AutoTokenizer loads (tokenizer.json: the same ids as the
run's data pipeline), README.md (model card: the run's metrics.json numbers, data, preset, git sha) and
run_metrics.json. Load it with::

    import fastformer.hf  # registers model_type "fastformer" with the Auto classes
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    model = AutoModelForSequenceClassification.from_pretrained(out_dir)

--check reloads the folder through the Auto classes, evaluates it on the raw texts of the run's test split and exits
1 unless the accuracy equals metrics.json's test accuracy and the same test items are right (metrics.json's per-item
record). The run's data must be reachable (the encoded cache or the
source files): --data-root / --cache-dir override the paths recorded in the run's config.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastformer.hf.export import check_folder, export_run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("out_dir", type=Path, nargs="?", help="default: <run dir>/hf")
    ap.add_argument("--data-root", help="data.root of the run's config (where its data lies on this machine)")
    ap.add_argument("--cache-dir", help="data.cache_dir of the run's config")
    ap.add_argument("--check", action="store_true", help="evaluate the exported folder on the run's test split")
    args = ap.parse_args(argv)
    out = export_run(args.run_dir, args.out_dir or args.run_dir / "hf", data_root=args.data_root,
                     cache_dir=args.cache_dir)
    print(f"wrote {out}")
    if not args.check:
        return 0
    r = check_folder(out, args.run_dir, data_root=args.data_root, cache_dir=args.cache_dir)
    ok = r["same_acc"] and r["same_items"] is not False
    items = {None: "", True: "; the same test items right", False: "; OTHER test items right"}[r["same_items"]]
    print(f"test accuracy of the exported folder {r['acc']:.4f} vs the run's {r['run_acc']:.4f}: "
          f"{'same' if r['same_acc'] else 'DIFFERENT'}{items}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
