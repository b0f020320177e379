"""The paper's Figure 2 (v5), digitised by eye from the log-scale plot (about +-10%; see PAPER.md section 2.5).

Values are the paper's y-axis ("Inference/Training Time Per Layer (s)") at 65,536 tokens per batch on one V100 with
Keras/TF 1.12; only ratios between curves are comparable with our numbers. ``None`` = not plotted (Transformer OOM).
"""
from __future__ import annotations

#: paper curve -> registry name
PAPER_NAMES = {"Fastformer": "fastformer", "Longformer": "longformer", "Linformer": "linformer",
               "BigBird": "bigbird", "LinearTrans": "linear_transformer", "Transformer": "transformer",
               "Poolingformer": "poolingformer"}

_COLS = ("fastformer", "longformer", "linformer", "bigbird", "linear_transformer", "transformer", "poolingformer")
_ROWS = {  # (mode, N): values in _COLS order, copied from PAPER.md section 2.5
    ("inference", 128): (13, 34, 60, 78, 75, 120, 540),
    ("inference", 512): (13, 34, 58, 79, 75, 600, 560),
    ("inference", 8192): (15.5, 38, 63, 87, 90, None, 600),
    ("inference", 65536): (57, 105, 205, 230, 165, None, 2600),
    ("training", 128): (37, 92, 168, 148, 182, 240, 1700),
    ("training", 512): (37, 95, 172, 152, 185, 1230, 1700),
    ("training", 8192): (80, 185, 360, 295, 395, None, 3500),
    ("training", 65536): (470, 990, 2150, 1450, 2000, None, 21000),
}
#: FIGURE2[mode][N][mixer] = digitised paper value (None where the curve is absent)
FIGURE2: dict[str, dict[int, dict[str, float | None]]] = {}
for (_mode, _n), _vals in _ROWS.items():
    FIGURE2.setdefault(_mode, {})[_n] = dict(zip(_COLS, _vals))


def paper_ratio(mode: str, seq_len: int, mixer: str) -> float | None:
    """Paper time(mixer) / time(Fastformer) at (mode, N), or None where not digitised / not plotted."""
    row = FIGURE2.get(mode, {}).get(seq_len)
    if row is None or row.get(mixer) is None:
        return None
    return row[mixer] / row["fastformer"]
