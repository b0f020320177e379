#!/usr/bin/env bash
# One prepared GPU run for the paper preset (issue 15), at most 8 minutes on one H100/H200:
#   every Table 4-6 cell (6 datasets x 8 mixers) with preset=paper trainer=gpu, bf16, a few optimizer steps, one
#   capped evaluation pass (beam-search decodes for summarization) -> results/gpu_paper_<card>.md (+ .json): ms/step,
#   tokens/s, peak memory, finished / OOM / failed, projected GPU-hours of each full table; then the paper's Figure 2
#   grid (make bench's GPU recipe, under the remaining time) -> results/efficiency_<card>.{md,png,csv}.
# The GPU image lacks Hydra, OmegaConf, rouge-score and nltk, and the real data samples live outside the repo; so first,
# on the CPU machine:
#   .venv/bin/python scripts/gpu_paper_smoke.py --prepare-carry .gpu_carry   # ~50 MiB: packages + data samples
# then, on the device, one call with carry=[".gpu_carry"]:   bash scripts/gpu_paper_smoke.sh
# The table is rewritten after every row, so a run cut short keeps its rows; time limits: SMOKE_S for the whole script
# (hard, via timeout) and the Python's own --deadline (soft, 15 s inside it), a per-run budget inside.
# Extra arguments go to scripts/gpu_paper_smoke.py (e.g. --datasets imdb --mixers fastformer,transformer --steps 20).
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu_session}
PY=${PY:-python3}
SMOKE_S=${SMOKE_S:-470}
mkdir -p "$OUT"
if [ -d .gpu_carry/site ]; then export PYTHONPATH="$PWD/.gpu_carry/site${PYTHONPATH:+:$PYTHONPATH}"; fi
if [ -z "${DATA_ROOT:-}" ] && [ -d .gpu_carry/data ]; then export DATA_ROOT="$PWD/.gpu_carry/data"; fi
export PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=1 WANDB_MODE=disabled PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

$PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton',
triton.__version__, torch.cuda.get_device_name(), torch.cuda.get_device_capability())" 2>&1
echo "== gpu_paper_smoke (limit ${SMOKE_S}s, data ${DATA_ROOT:-<default>})"
timeout -k 10 "$SMOKE_S" $PY scripts/gpu_paper_smoke.py --out "$OUT" --deadline $((SMOKE_S - 15)) "$@" 2>&1 \
    | tee "$OUT/paper_smoke.log"
echo "paper smoke exit: $?" | tee -a "$OUT/paper_smoke.log"
ls -l "$OUT"
