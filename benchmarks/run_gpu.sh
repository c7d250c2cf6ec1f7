#!/usr/bin/env bash
# Every GPU measurement in one pass, each step bounded in time so one failure cannot starve the
# rest: the fused MSS kernel's tests compiled for the GPU, the TC-estimator benchmark, the pipeline
# throughput (GPT-2-small-shaped bridge, bf16; whole-batch TC, tc_batch 512/1024, guard read every
# step), the data-parallel fit through torchrun on the one GPU (NCCL), the multi-hook fit
# (benchmarks/multi_hook.py) and then, for the time
# left, one accumulation step of the sprites image-quality runs (run_gpu_sprites.sh: resumes
# from the tars carried in $CKPT_IN, writes them back). The device returns at most 8 files: the
# benchmarks' JSON go into one tar, $OUT/bench.tar; the sprites script adds its JSON and six run
# tars.
#
#   OUT=$OUT TOTAL=540 CKPT_IN=.ckpt/sprites bash benchmarks/run_gpu.sh
set -u
FINAL=${OUT:-benchmarks/results}
OUT=/tmp/gpu_bench           # the small JSON files, packed into $FINAL/bench.tar at the end
TOTAL=${TOTAL:-540}          # seconds this whole script may take
mkdir -p "$OUT" "$FINAL"
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
timeout 45 python3 benchmarks/pipeline.py --host gpt2-small --out "$OUT/pipeline_h100.json" 2>&1 | tail -3
for hb in 4096 8192; do for tb in 512 1024; do
  timeout 45 python3 benchmarks/pipeline.py --host gpt2-small --head-batch $hb --tc-batch $tb \
      --out "$OUT/pipeline_h100_hb${hb}_tc${tb}.json" 2>&1 | tail -2 | head -1
done; done
timeout 45 python3 benchmarks/pipeline.py --host gpt2-small --head-batch 8192 --tc-batch 1024 --check-every 1 \
    --out "$OUT/pipeline_h100_hb8192_tc1024_sync.json" 2>&1 | tail -2 | head -1

log "distributed fit: one GPU through torchrun (NCCL group of one) against a plain process"
timeout 150 python3 benchmarks/distributed_fit.py --device cuda --nprocs 1 --batch 8192 --rows 65536 \
    --width 768 --hidden 1024 --latents 32 --steps 50 --warmup 5 \
    --out "$OUT/distributed_fit_h100.json" 2>&1 | grep -v Warning | tail -8
log "distributed tests (2 gloo processes, CPU)"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_distributed.py 2>&1 | tail -3
log "multi-hook fit (N = 1, 2, 4 probes from one forward against N separate fits)"
timeout 90 python3 benchmarks/multi_hook.py --host gpt2-small --batch 32 --batches 16 --head-batch 4096 \
    --repeats 1 --out "$OUT/multi_hook_h100.json" 2>&1 | tail -5

tar -C "$OUT" -cf "$FINAL/bench.tar" .
log "sprites image quality: one accumulation step"
TOTAL=$(( TOTAL - SECONDS )) OUT="$FINAL" CKPT_IN="${CKPT_IN:-.ckpt/sprites}" bash benchmarks/run_gpu_sprites.sh
log "done"
