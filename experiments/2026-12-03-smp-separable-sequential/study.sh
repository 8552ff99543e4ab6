#!/usr/bin/env bash
# smp Unet-resnet18 and Unet-mobilenet_v2: as built (square) vs decoder-1x5 vs all-1x5 at equal
# wall time on carvana-mini, 128^2, random init. One run at a time with every core (the load is
# logged), then each is exported (ONNX fp32/fp16/INT8 with the gates) and all are benched in one
# interleaved `lkmseg bench` (latency per runtime x precision, training images/s, Dice).
# usage: LKMSEG_CARVANA=... PY=/path/to/python-with-smp bash study.sh OUT [BUDGET_S]
set -euo pipefail
OUT=$(realpath -m "${1:?out folder}"); BUDGET=${2:-240}
D=${LKMSEG_CARVANA:?set LKMSEG_CARVANA}
PY=${PY:-python}
mkdir -p "$OUT"
lscpu > "$OUT/lscpu.txt"
( while sleep 60; do uptime; done ) > "$OUT/load.txt" &
LOADLOG=$!
trap 'kill $LOADLOG' EXIT
variants=("resnet18 KxK all square" "resnet18 1x5 decoder decoder-1x5" "resnet18 1x5 all all-1x5"
          "mobilenet_v2 KxK all square" "mobilenet_v2 1x5 decoder decoder-1x5")
runs=()
for v in "${variants[@]}"; do
  read -r enc block where name <<< "$v"
  run="$OUT/runs/$enc-$name"
  [ -f "$run/summary.json" ] || $PY -m lkmseg train --arch "smp:Unet:$enc" --block "$block" \
      --where "$where" --data "$D" --size 128 --time-budget "${BUDGET}s" --out "$OUT/runs" \
      --name "$enc-$name" > "$OUT/train-$enc-$name.log" 2>&1
  $PY -m lkmseg export "$run" > "$OUT/export-$enc-$name.log" 2>&1 \
    || echo "export $enc-$name: exit $?" >> "$OUT/export-$enc-$name.log"
  runs+=("$run")
done
$PY -m lkmseg bench "${runs[@]}" --engines torch,onnxruntime --batch-sizes 1 \
    --reps 20 --out "$OUT/bench" > "$OUT/bench.log" 2>&1 || echo "bench: exit $?" >> "$OUT/bench.log"
