#!/usr/bin/env bash
# smp Unet-resnet18 as built (square) vs decoder-1x5 vs all-1x5 at equal wall time, 128^2,
# random init: the three train side by side (one torch thread each, on a shared CPU whose
# load is logged), then each is exported (ONNX fp32/fp16/INT8 with the gates) and benched.
# usage: LKMSEG_CARVANA=... PY=/path/to/python-with-smp bash study.sh OUT [BUDGET_S]
set -euo pipefail
OUT=${1:?out folder}; BUDGET=${2:-300}
D=${LKMSEG_CARVANA:?set LKMSEG_CARVANA}
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
( while sleep 60; do uptime; done ) > "$OUT/load.txt" &
LOADLOG=$!
trap 'kill $LOADLOG' EXIT
variants=("KxK all square" "1x5 decoder decoder-1x5" "1x5 all all-1x5")
pids=()
for v in "${variants[@]}"; do
  read -r block where name <<< "$v"
  $PY -m lkmseg train --arch smp:Unet:resnet18 --block "$block" --where "$where" --data "$D" \
      --size 128 --time-budget "${BUDGET}s" --out "$OUT/runs" --name "$name" \
      > "$OUT/train-$name.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
runs=()
for v in "${variants[@]}"; do
  read -r _ _ name <<< "$v"
  $PY -m lkmseg export "$OUT/runs/$name" > "$OUT/export-$name.log" 2>&1 \
    || echo "export $name: exit $?" >> "$OUT/export-$name.log"
  runs+=("$OUT/runs/$name")
done
$PY -m lkmseg bench "${runs[@]}" --engines torch,onnxruntime --batch-sizes 1,8 --reps 10 \
    --out "$OUT/bench"
