"""Write synthetic MIND (official file format) for news-recommendation runs without the real data.

    python scripts/make_synthetic_mind.py --out data                     # synthetic titles
    python scripts/make_synthetic_mind.py --out data \\
        --news-tsv ../shared/data/mind/MINDsmall_sample/news.tsv          # real MIND news titles as the news pool

Creates ``<out>/MINDsynthetic_{train,dev,test}/{news.tsv,behaviors.tsv,synthetic_info.json}``; train with
``data.version=synthetic`` (see configs/data/mind_rec.yaml).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastformer.data.synthetic_mind import make_synthetic_mind  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.environ.get("DATA_ROOT", "data"), help="data root (default $DATA_ROOT or data)")
    p.add_argument("--news-tsv", default=None, help="real MIND news.tsv whose ids/categories/titles to use")
    p.add_argument("--n-news", type=int, default=2000, help="news items when no --news-tsv is given")
    p.add_argument("--n-topics", type=int, default=15, help="topics when no --news-tsv is given")
    p.add_argument("--n-users", type=int, default=2000)
    p.add_argument("--train", type=int, default=20_000, help="training impressions")
    p.add_argument("--dev", type=int, default=3_000, help="dev (validation) impressions")
    p.add_argument("--test", type=int, default=3_000, help="test impressions (labelled)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = make_synthetic_mind(a.out, news_tsv=a.news_tsv, n_news=a.n_news, n_topics=a.n_topics, n_users=a.n_users,
                              impressions={"train": a.train, "dev": a.dev, "test": a.test}, seed=a.seed)
    print(f"wrote {out}/MINDsynthetic_{{train,dev,test}}")
    return out


if __name__ == "__main__":
    main()
