#!/usr/bin/env bash
# Every GPU measurement in one pass, each step bounded in time so one failure cannot starve the
# rest: the fused MSS kernel's tests compiled for the GPU, the TC-estimator benchmark, the pipeline
# throughput (GPT-2-small-shaped bridge, bf16) and the sprites image-quality table (9 runs sharing
# the GPU, time-budgeted). Results go to $OUT (default benchmarks/results).
#
#   OUT=/tmp/gpu TOTAL=540 bash benchmarks/run_gpu.sh
set -u
OUT=${OUT:-benchmarks/results}
TOTAL=${TOTAL:-540}          # seconds this whole script may take
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
log() { echo "== $(date +%T) [${SECONDS}s] $*"; }

log "device"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"

log "fused kernel tests (compiled)"
TRITON_INTERPRET=0 timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py -m cuda 2>&1 | tail -5

log "TC estimator"
timeout 100 python3 benchmarks/tc_estimator.py --sizes 1024x32,4096x32,8192x32 --repeats 3 \
    --dense-limit-gb 70 --out "$OUT/tc_estimator_h100.json" 2>&1 | tail -12

log "pipeline"
timeout 60 python3 benchmarks/pipeline.py --host gpt2-small --out "$OUT/pipeline_h100.json" 2>&1 | tail -3
timeout 60 python3 benchmarks/pipeline.py --host gpt2-small --head-batch 8192 \
    --out "$OUT/pipeline_h100_hb8192.json" 2>&1 | tail -2
for hb in 4096 8192; do for tb in 512 1024; do
  timeout 60 python3 benchmarks/pipeline.py --host gpt2-small --head-batch $hb --tc-batch $tb \
      --out "$OUT/pipeline_h100_hb${hb}_tc${tb}.json" 2>&1 | tail -2 | head -1
done; done
timeout 60 python3 benchmarks/pipeline.py --host gpt2-small --head-batch 8192 --tc-batch 1024 --check-every 1 \
    --out "$OUT/pipeline_h100_hb8192_tc1024_sync.json" 2>&1 | tail -2 | head -1

# what is left, less ~100 s for scoring and saving, goes to training
BUDGET=$(( TOTAL - SECONDS - 110 ))
log "image quality: ${BUDGET}s of training per run"
python3 benchmarks/image_quality.py --device cuda --jobs 9 --batch-size 512 --lr 1e-3 --steps 100000 \
    --num-train 300000 --fvae-votes 2000 --time-budget "$BUDGET" --save-dir /tmp/iq_models \
    --out "$OUT/image_quality_h100.json" 2>&1 | tail -16
tar -C /tmp/iq_models -cf "$OUT/tcvae_models.tar" $(cd /tmp/iq_models && ls -d beta_tcvae-* 2>/dev/null)
log "done"
