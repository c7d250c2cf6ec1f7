#!/usr/bin/env bash
# A learning curve of one sprites run on the CPU: train in chunks of CHUNK seconds, score after
# each (MIG, posterior MIG, DCI, FactorVAE score, reconstruction), carry on from the checkpoint.
# The chunks' rows go to $OUT/chunk<i>.json and .jsonl; the latest model to $OUT/save.
#
#   OBJECTIVE=beta_tcvae SEED=0 STEPS=40000 DECAY=8000 OUT=.ckpt/bc_tcvae_s0 bash benchmarks/run_cpu_sprites.sh
#
# STEPS ends the run at that step and DECAY decays the LR linearly to 0 over its last DECAY steps;
# the shipped zoo/sprites_beta_tcvae is STEPS=40000 DECAY=8000 (the chunks stop once it is reached).
#
# The CPU recipe: batches of 64, lr 5e-4, all 737 280 sprites (a dSprites-sized sample), the spatial
# broadcast decoder (DECODER=deconv: Burgess et al.'s). Other work on the same cores slows it
# several-fold (OpenMP threads contend): leave the machine to it.
set -u
OBJECTIVE=${OBJECTIVE:-beta_tcvae}
SEED=${SEED:-0}
CHUNKS=${CHUNKS:-7}
FIRST=${FIRST:-1}               # number of the first chunk (a resumed run keeps its earlier chunks)
CHUNK=${CHUNK:-1200}
OUT=${OUT:-.ckpt/cpu_sprites}
STEPS=${STEPS:-10000000}       # default: no end but the chunks' time
DECAY=${DECAY:-0}
DECODER=${DECODER:-broadcast}
EXTRA=${EXTRA:-}              # e.g. --amp-cpu
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
for i in $(seq "$FIRST" $((FIRST + CHUNKS - 1))); do
    python benchmarks/image_quality.py --objectives "$OBJECTIVE" --seeds 1 --seed-offset "$SEED" \
        --steps "$STEPS" --decay-steps "$DECAY" --batch-size 64 --lr 5e-4 --num-train 737280 --num-eval 5000 --fvae-votes 2000 \
        --time-budget "$CHUNK" --checkpoint-dir "$OUT/ck" --save-dir "$OUT/save" --decoder "$DECODER" $EXTRA \
        --out "$OUT/chunk$i.json" > "$OUT/chunk$i.log" 2>&1
    grep "seed" "$OUT/chunk$i.log" | tail -1
    # stop once the run has reached STEPS
    python -c "import json, sys; sys.exit(json.load(open('$OUT/chunk$i.json'))['runs'][0].get('steps', 0) < $STEPS)" \
        2>/dev/null && break
done
