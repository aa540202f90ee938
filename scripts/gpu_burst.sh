#!/bin/bash
# A short GPU burst on a lent, size-capped machine (assets/engine/MODEL.md records what ran where):
#   1. scripts/gpu_check.sh (CUDA/TensorRT parity tests, engine latency) into $OUT/check;
#   2. a probe of the training speed, then a fine-tune of the shipped rt engine with its own run
#      config (CONFIG=) on a packed faces folder (`nasfe-train pack --out gpu/faces`), sized to end
#      SCRIPT_S seconds after the start (the loop checkpoints on the SIGINT of `timeout`).
# Best/last weights, logs and the run config land in $OUT. Runs from any directory.
# Usage: OUT=out SCRIPT_S=565 bash scripts/gpu_burst.sh     (INIT=, LR=, BATCH=, PACK=, SKIP_CHECKS=1)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-gpu/out}; SCRIPT_S=${SCRIPT_S:-540}; BATCH=${BATCH:-48}; PROBE=${PROBE:-60}; PY=${PY:-python3}
PACK=${PACK:-gpu/faces}; WORK=${WORK:-gpu}
mkdir -p "$OUT"
NASFE=($PY -c "import sys; from training.cli import main; sys.exit(main())")
train() { "$@" 2>&1 | tr '\r' '\n' | grep -v '^\(retrain\|reference photos\|aligning\)' | tail -n 30; }
COMMON=(--config ${CONFIG:-assets/engine/training/finetune2_run_config.json} --set data.faces_dir=$PACK
        --set data.cache_dir=$WORK/cache --set amp=off --set threads=8 --set retrain.init=${INIT:-assets/engine/weights.safetensors} --set retrain.batch=$BATCH
        --set retrain.lr=${LR:-0.0003} --set retrain.lr_final=0.00001 --set export.onnx=false)
if [ "${SKIP_CHECKS:-0}" = 0 ]; then
  OUT="$OUT/check" bash scripts/gpu_check.sh 2>&1 | tail -n 20 || echo "gpu_check failed: see $OUT/check"
fi
echo "checks done at $SECONDS s"
mkdir -p $WORK/probe $WORK/run && cp assets/engine/genotype.json $WORK/probe/ && cp assets/engine/genotype.json $WORK/run/
train "${NASFE[@]}" retrain --out $WORK/probe "${COMMON[@]}" --set retrain.steps=$PROBE --set retrain.eval_every=0 \
  --set retrain.log_every=10 --set retrain.ckpt_every=100000 || exit 1
RATE=$(tail -1 $WORK/probe/retrain/log.csv | cut -d, -f3)
LEFT=$(( SCRIPT_S - SECONDS - 15 ))
STEPS=$($PY -c "print(max(200, int(float('$RATE') * 0.95 * ($LEFT - 30)) // 200 * 200))")
echo "probe done at $SECONDS s: $RATE it/s at batch $BATCH -> $STEPS steps in the $LEFT s left"
train timeout -s INT $LEFT "${NASFE[@]}" retrain --out $WORK/run "${COMMON[@]}" \
  --set retrain.steps=$STEPS --set retrain.eval_every=200 --set retrain.ckpt_every=1000
cp $WORK/run/best/weights.safetensors "$OUT/best.safetensors"
cp $WORK/run/retrain/weights.safetensors "$OUT/last.safetensors"
cp $WORK/run/retrain/log.csv $WORK/run/retrain/val.csv $WORK/run/config.json "$OUT/"
tail -4 $WORK/run/retrain/val.csv
echo "total $SECONDS s"
