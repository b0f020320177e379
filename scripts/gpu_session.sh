#!/usr/bin/env bash
# One prepared GPU run for the fused Fastformer (issue 7), sized for a short device lease (~8 minutes):
#   1. the GPU tests of the kernels against eager (pytest -m gpu),
#   2. the GPU benchmark (scripts/bench_fastformer_gpu.py) with the fused rows first, torch.compile last, one
#      alternative launch rule (the previous tf32 / BLOCK_N=32 / 3-stage rule), CUDA-graph rows and a profile.
# Needs only python3 with torch, triton, numpy and pytest (no Hydra): run it in the repo root on the GPU machine
#   bash scripts/gpu_session.sh            # writes into $OUT (the device tool's folder) or results/gpu_session/
# Each step has its own time limit; the benchmark rewrites its table after every row, so a step cut short still
# leaves what it measured. Afterwards commit results/gpu_fastformer_<card>.md and tune fastformer/kernels/launch.py
# and the fold rule (fastformer_fn.py) from it.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu_session}
PY=${PY:-python3}
TEST_S=${TEST_S:-200}
BENCH_S=${BENCH_S:-300}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi >"$OUT/nvidia_smi.txt" 2>&1
$PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton',
triton.__version__, torch.cuda.get_device_name(), torch.cuda.get_device_capability())" 2>&1 | tee "$OUT/versions.txt"

echo "== pytest -m gpu (limit ${TEST_S}s)"
timeout "$TEST_S" $PY -m pytest -q -m gpu -p no:cacheprovider tests/test_fastformer_triton.py 2>&1 \
    | tee "$OUT/pytest_gpu.log"
echo "pytest exit: $?" | tee -a "$OUT/pytest_gpu.log"

echo "== bench_fastformer_gpu (limit ${BENCH_S}s)"
timeout "$BENCH_S" $PY scripts/bench_fastformer_gpu.py --out "$OUT" --warmup 3 --iters 10 \
    --impls triton,triton_gate,triton_fold,sdpa,eager,compile \
    --launch "dot=tf32,dot_bwd=tf32,block_n=32,num_stages=3" --graph --profile 2>&1 | tee "$OUT/bench.log"
echo "bench exit: $?" | tee -a "$OUT/bench.log"
ls -l "$OUT"
if [ "${PAPER_SMOKE:-0}" = 1 ]; then  # issue 15's run after this one (~8 more minutes): only where one call may last
    bash scripts/gpu_paper_smoke.sh   # ~17 minutes; under a 10-minute command limit run it as a call of its own
fi
