#!/bin/bash
# A short GPU burst on a lent, size-capped machine (assets/engine/MODEL.md records what ran where).
# Two training jobs share the one GPU at the same time (at these network sizes a step should be bound by
# kernel launches, not by the GPU, so a second process costs the first little), on a packed faces
# folder (`nasfe-train pack --out gpu/faces`), both sized to end SCRIPT_S seconds after the start:
#   ft    fine-tunes the shipped rt engine with its own run config (CONFIG=);
#   wide  trains rt_wide (engine/configs.py) on the shipped genotype from scratch: PRETRAIN_MIN
#         minutes of encoder pretraining, then retrain; or, with WIDE_INIT=FILE (e.g. a CPU run's
#         best weights copied into gpu/), retrain from those weights.
# Each retrain first runs ~PROBE steps, is stopped (SIGINT checkpoints) and resumes with the step
# count its measured rate fits into the time left, so the cosine schedule ends on time; `timeout`
# stops it (with a checkpoint) if that estimate was long. Optional: scripts/gpu_check.sh first.
# Back in $OUT: NAME_best/last.safetensors and NAME.tgz (logs, validation, run config).
# Usage: OUT=out SCRIPT_S=535 bash scripts/gpu_burst.sh      (BATCH=, FT_LR=, WIDE_LR=, WIDE_INIT=, CHECKS=1)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-gpu/out}; SCRIPT_S=${SCRIPT_S:-535}; BATCH=${BATCH:-192}; PROBE=${PROBE:-60}; PY=${PY:-python3}
PACK=${PACK:-gpu/faces}; WORK=${WORK:-gpu/work}; PRETRAIN_MIN=${PRETRAIN_MIN:-1.0}; THREADS=${THREADS:-4}
CONFIG=${CONFIG:-assets/engine/training/finetune2_run_config.json}
mkdir -p "$OUT" "$WORK"
END=$(( SCRIPT_S - 10 ))
NASFE=($PY -c "import sys; from training.cli import main; sys.exit(main())")  # an array: `&`, `timeout` and $! see python
rows() { [ -f "$1" ] && echo $(( $(wc -l < "$1") - 1 )) || echo 0; }
common() {  # the run-config overrides every job shares; $1 = job name
  echo --set data.faces_dir=$PACK --set data.cache_dir=$WORK/cache_$1 --set amp=off --set threads=$THREADS \
       --set export.onnx=false --set retrain.batch=$BATCH --set retrain.lr_final=0.00001 --set retrain.lr_warmup=300
}

retrain() {  # retrain NAME ARGS...: probe, then resume with the steps that fit before END
  local name=$1; shift
  local run=$WORK/$name log=$WORK/$name.log start=$SECONDS
  "${NASFE[@]}" retrain --out $run "$@" --set retrain.steps=1000000 --set retrain.eval_every=0 \
    --set retrain.log_every=10 --set retrain.ckpt_every=1000000 >>$log 2>&1 &
  local pid=$!
  while kill -0 $pid 2>/dev/null && [ "$(rows $run/retrain/log.csv)" -lt $(( PROBE / 10 )) ]; do sleep 1; done
  kill -INT $pid 2>/dev/null; wait $pid
  [ -f $run/retrain/log.csv ] || { echo "$name: probe failed (see $log)"; tail -5 $log; return 1; }
  local last step elapsed rate
  last=$(tail -1 $run/retrain/log.csv); step=${last%%,*}
  elapsed=$(cut -d, -f2 <<<"$last"); rate=$(cut -d, -f3 <<<"$last")
  local startup=$(( SECONDS - start - ${elapsed%.*} )) left=$(( END - SECONDS ))
  local steps=$($PY -c "print($step + max(100, int($rate * 0.97 * ($left - $startup - 15))))")
  echo "$name: probe $step steps at $rate it/s (startup ${startup} s) -> $steps steps in the $left s left"
  timeout -s INT $left "${NASFE[@]}" retrain --out $run --resume --set retrain.steps=$steps --set retrain.eval_every=200 \
    --set retrain.ckpt_every=500 >>$log 2>&1
  cp $run/best/weights.safetensors "$OUT/${name}_best.safetensors"
  cp $run/retrain/weights.safetensors "$OUT/${name}_last.safetensors" 2>/dev/null ||
    cp $run/best/weights.safetensors "$OUT/${name}_last.safetensors"
  tar czf "$OUT/$name.tgz" -C $WORK $name.log $name/config.json $name/genotype.json $name/retrain/log.csv \
    $name/retrain/val.csv $(cd $WORK && ls $name/pretrain/*.csv 2>/dev/null)
  echo "$name: done at $SECONDS s; validation (step, psnr, psnr_noid, psnr_input):"; tail -3 $run/retrain/val.csv
}

ft() {
  mkdir -p $WORK/ft && cp assets/engine/genotype.json $WORK/ft/
  retrain ft --config $CONFIG $(common ft) --set retrain.init=assets/engine/weights.safetensors --set retrain.lr=${FT_LR:-0.0002}
}

wide() {
  mkdir -p $WORK/wide && sed 's/"config": "rt"/"config": "rt_wide"/' assets/engine/genotype.json > $WORK/wide/genotype.json
  if [ -n "${WIDE_INIT:-}" ]; then
    retrain wide --config $CONFIG $(common wide) --set engine=rt_wide --set retrain.init=$WIDE_INIT --set retrain.lr=${WIDE_LR:-0.0005}
    return
  fi
  "${NASFE[@]}" pretrain --out $WORK/wide --config $CONFIG $(common wide) --set engine=rt_wide --set pretrain.batch=64 \
    --set pretrain.steps=100000 --set pretrain.max_minutes=$PRETRAIN_MIN --set pretrain.eval_every=200 >>$WORK/wide.log 2>&1 ||
    { echo "wide: pretrain failed"; tail -5 $WORK/wide.log; return 1; }
  echo "wide: pretrain done at $SECONDS s"
  retrain wide --config $CONFIG $(common wide) --set engine=rt_wide --set retrain.init= \
    --set retrain.from_search=false --set retrain.lr=${WIDE_LR:-0.001}
}

if [ "${CHECKS:-0}" = 1 ]; then
  OUT="$OUT/check" bash scripts/gpu_check.sh 2>&1 | tail -n 20 || echo "gpu_check failed: see $OUT/check"
fi
ft > $WORK/ft.out 2>&1 &
wide > $WORK/wide.out 2>&1 &
wait
cat $WORK/ft.out $WORK/wide.out
echo "total $SECONDS s"
