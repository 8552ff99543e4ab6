#!/usr/bin/env bash
# Did issue 18's refactor change training or serving speed? `lkmseg train` images/s and the
# harness's fastest precision x layout (benchmarks/train_speed.py), then the serve load at
# the defaults, for two checkouts in turn (A B A B), on the same machine in one session.
#   LKMSEG_CARVANA=carvana-mini bash run.sh OUT OLD_TREE NEW_TREE [PYTHON]
set -euo pipefail
OUT=$(realpath -m "$1"); OLD=$(realpath "$2"); NEW=$(realpath "$3"); PY=${4:-python}
mkdir -p "$OUT"
lscpu > "$OUT/lscpu.txt"
export LKMSEG_CACHE="$OUT/cache"
for round in 1 2; do
  for tag in old new; do
    tree=$OLD; [ "$tag" = new ] && tree=$NEW
    (cd "$tree" && PYTHONPATH="$tree" "$PY" -m lkmseg train --block 5x5 --size 256 --batch-size 8 \
        --steps 40 --val-every 1000 --out "$OUT/runs_$tag" --name "r$round" >/dev/null)
    (cd "$tree" && PYTHONPATH="$tree" "$PY" benchmarks/train_speed.py --blocks 5x5 --size 256 \
        --batch 8 --rounds 6 --json "$OUT/harness_${tag}_r$round.json" >/dev/null)
    uptime >> "$OUT/load.txt"
  done
done
run=$OUT/runs_old/r1  # the old code cannot read a config.json with the new model fields
(cd "$OLD" && PYTHONPATH="$OLD" "$PY" -m lkmseg export "$run" --no-int8 >/dev/null)
for tag in old new; do
  tree=$OLD; [ "$tag" = new ] && tree=$NEW
  (cd "$tree" && PYTHONPATH="$tree" "$PY" benchmarks/serve_load.py "$run" --images "${LKMSEG_CARVANA:?}/train" --requests 100 \
      --concurrency 1,4 --protocols http --rounds 2 --only-load --engine onnxruntime \
      --json "$OUT/serve_$tag.json" >/dev/null)
  uptime >> "$OUT/load.txt"
done
