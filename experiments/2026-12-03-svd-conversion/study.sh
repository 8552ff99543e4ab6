#!/usr/bin/env bash
# The conversion study: seed 5x5 trained SOURCE_S at 128^2 -> 1x5 by SVD (BN re-estimated),
# then FT_S of fine-tuning; against 1x5 trained from scratch for SOURCE_S + FT_S.
# The scratch run trains beside the source (each one torch thread, on a shared CPU whose load
# is logged), so all three see the same machine; budgets keep the issue's 90 : 60 : 150.
# usage: LKMSEG_CARVANA=... bash study.sh OUT [SOURCE_S] [FT_S] [SEED]
set -euo pipefail
OUT=${1:?out folder}; SRC_S=${2:-90}; FT_S=${3:-60}; SEED=${4:-0}
D=${LKMSEG_CARVANA:?set LKMSEG_CARVANA}
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
( while sleep 60; do uptime; done ) > "$OUT/load.txt" &
LOADLOG=$!
trap 'kill $LOADLOG' EXIT
common=(--data "$D" --size 128 --seed "$SEED" --out "$OUT/runs")
$PY -m lkmseg train --block 1x5 "${common[@]}" --time-budget "$((SRC_S + FT_S))s" \
    --name "1x5-$((SRC_S + FT_S))s" > "$OUT/scratch.log" 2>&1 &
SCRATCH=$!
$PY -m lkmseg train --block 5x5 "${common[@]}" --time-budget "${SRC_S}s" --name "5x5-${SRC_S}s"
$PY -m lkmseg convert "$OUT/runs/5x5-${SRC_S}s" --block 1x5 --fine-tune "${FT_S}s" \
    --out "$OUT/runs/5x5-${SRC_S}s-to-1x5-ft${FT_S}s"
wait $SCRATCH
$PY "$(dirname "$0")/collect.py" "$OUT" "$SRC_S" "$FT_S"
