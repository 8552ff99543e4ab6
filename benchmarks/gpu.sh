#!/usr/bin/env bash
# The GPU check: drives the product on one machine and writes one JSON (device, date, versions,
# per-block training images/s, export outcome incl. TensorRT, bench latencies):
#
#   bash benchmarks/gpu.sh                       # CUDA, < 8 min -> $OUT/gpu_bench.json, else
#                                                #   benchmarks/results/gpu_bench-<gpu>-<date>.json
#   bash benchmarks/gpu.sh --device cpu --tiny   # the same commands on tiny models, any machine
#
# Steps (each `python -m lkmseg ...` from this checkout, PYTHONPATH=., no install, no internet):
#   lkmseg info --json; lkmseg data synth (unless --data or --tiny);
#   lkmseg train --device D per block (short runs, the default --amp auto);
#   lkmseg export RUN --trt --no-int8 per block (no TensorRT: export says so, exit 2, recorded);
#   lkmseg bench RUNS --device D --tf32 --no-train. benchmarks/gpu_collect.py gathers the files
#   into the JSON after every step, so a run stopped by the time guard keeps what it measured.
# Options: --device cuda|cpu, --tiny, --blocks 3x3,5x5,1x5, --data DIR (default: the embedded
# synthetic set; --tiny: the package's samples), --budget SECONDS (440), --out FILE,
# --trt-precision fp16|fp32, --wheels DIR (wheels installed with pip --no-index into a temporary
# folder first, e.g. onnxslim where it is missing; default ./.whl when present).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

DEVICE=cuda TINY=0 BLOCKS=3x3,5x5,1x5 DATA="" BUDGET=440 OUTFILE="" TRT_PREC=fp16
WHEELS="${LKMSEG_WHEELS:-$ROOT/.whl}"
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --tiny) TINY=1; shift ;;
        --blocks) BLOCKS="$2"; shift 2 ;;
        --data) DATA="$2"; shift 2 ;;
        --budget) BUDGET="$2"; shift 2 ;;
        --out) OUTFILE="$2"; shift 2 ;;
        --trt-precision) TRT_PREC="$2"; shift 2 ;;
        --wheels) WHEELS="$2"; shift 2 ;;
        *) echo "gpu.sh: unknown option $1 (see the head of benchmarks/gpu.sh)" >&2; exit 2 ;;
    esac
done
case "$BUDGET" in ''|*[!0-9]*) echo "gpu.sh: --budget $BUDGET: whole seconds" >&2; exit 2 ;; esac

pick_python() {
    local c
    for c in "${PYTHON:-}" .venv/bin/python python3 python; do
        [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 && "$c" -c "import torch" 2>/dev/null \
            && { echo "$c"; return 0; }
    done
    return 1
}
PY="$(pick_python)" || { echo "gpu.sh: no python with torch found (set PYTHON=...)" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/lkmseg-gpu-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export LKMSEG_CACHE="${LKMSEG_CACHE:-$WORK/cache}" PYTHONUNBUFFERED=1
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
        --target "$WORK/site" "$WHEELS"/*.whl && export PYTHONPATH="$PYTHONPATH:$WORK/site"
fi
if [ -z "$OUTFILE" ]; then
    if [ -n "${OUT:-}" ]; then OUTFILE="$OUT/gpu_bench.json"; else OUTFILE="auto"; fi
fi

COLLECT=("$PY" "$ROOT/benchmarks/gpu_collect.py" "$WORK" --out "$OUTFILE" --device "$DEVICE"
         --blocks "$BLOCKS" --tiny "$TINY" --budget "$BUDGET")
"${COLLECT[@]}" --packages || exit 2   # lists what is missing; exits 2 if lkmseg cannot run

if [ "$TINY" = 1 ]; then
    DATA="${DATA:-$ROOT/lkmseg/samples}"
    TRAIN=(--size 64 --width 4 --depth 3 --steps 3 --batch-size 2 --amp off --channels-last off)
    EXPORT=(--parity-images 2 --gate-images 2)
    BENCH=(--batch-sizes 1 --reps 3 --rounds 1 --limit 2)
    CAP_TRAIN=120 CAP_EXPORT=180 CAP_BENCH=240
else
    TRAIN=(--size 256 --batch-size 16 --time-budget 20s)
    EXPORT=(--parity-images 8 --gate-images 16)
    BENCH=(--batch-sizes 1,8 --reps 30 --rounds 3 --limit 16)
    CAP_TRAIN=110 CAP_EXPORT=90 CAP_BENCH=150
fi
STEPS="$WORK/steps.tsv"
: >"$STEPS"
DEADLINE=$((SECONDS + BUDGET))

# step NAME MIN_SECONDS CAP_SECONDS COMMAND...: run it under the time left (less $RESERVE
# seconds kept for the steps after it), log it, record it
step() {
    local name="$1" need="$2" cap="$3" left t0 rc
    shift 3
    left=$((DEADLINE - SECONDS - ${RESERVE:-0}))
    [ "$left" -lt 0 ] && left=0
    if [ "$left" -lt "$need" ]; then
        printf '%s\tskipped\t0\ttime budget: %ss left, this step needs ~%ss\n' \
            "$name" "$left" "$need" >>"$STEPS"
    else
        [ "$cap" -gt "$left" ] && cap="$left"
        echo "== $name (at most ${cap}s): $*"
        t0=$SECONDS
        timeout -k 10 "$cap" "$@" >"$WORK/$name.log" 2>&1
        rc=$?
        printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$WORK/$name.log" >>"$STEPS"
        tail -n 3 "$WORK/$name.log"
    fi
    "${COLLECT[@]}" >/dev/null
}

command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader >"$WORK/nvidia_smi.csv" 2>/dev/null
step info 5 60 sh -c '"$0" -m lkmseg info --json >"$1"' "$PY" "$WORK/info.json"
if [ -z "$DATA" ]; then   # the embedded synthetic set, written where this run can see it
    step data 5 120 "$PY" -m lkmseg data synth "$WORK/data"
    DATA="$WORK/data"
fi
TRAIN+=(--data "$DATA")
IFS=, read -r -a BLOCK_LIST <<<"$BLOCKS"
for b in "${BLOCK_LIST[@]}"; do
    RESERVE=$((TINY ? 0 : 150)) step "train_$b" 20 "$CAP_TRAIN" \
        "$PY" -m lkmseg train --block "$b" --device "$DEVICE" "${TRAIN[@]}" \
        --out "$WORK/runs" --name "$b"
done
for b in "${BLOCK_LIST[@]}"; do
    [ -f "$WORK/runs/$b/config.json" ] || continue
    RESERVE=$((TINY ? 0 : 90)) step "export_$b" 15 "$CAP_EXPORT" \
        "$PY" -m lkmseg export "$WORK/runs/$b" --trt --trt-precision "$TRT_PREC" --no-int8 \
        "${EXPORT[@]}"
done
RUNS=()
for b in "${BLOCK_LIST[@]}"; do
    [ -f "$WORK/runs/$b/model.safetensors" ] && RUNS+=("$WORK/runs/$b")
done
if [ "${#RUNS[@]}" -gt 0 ]; then
    step bench 20 "$CAP_BENCH" "$PY" -m lkmseg bench "${RUNS[@]}" --device "$DEVICE" --tf32 \
        --no-train --engines torch,onnxruntime,tensorrt "${BENCH[@]}" --out "$WORK/bench"
fi
"${COLLECT[@]}" --final
