#!/usr/bin/env bash
# The GPU benchmark, one command, no internet needed (see benchmarks/gpu_bench.py):
#
#   bash benchmarks/gpu.sh                       # -> $OUT/gpu_bench.json, else benchmarks/results/
#   bash benchmarks/gpu.sh --device cpu --tiny   # the same code path in seconds, on any machine
#
# Extra arguments go to gpu_bench.py. The Python script keeps to its own budget (--budget,
# 440 s by default) and rewrites its JSON after every part; this wrapper adds a hard stop at
# 8 minutes in case something hangs (a driver, a compiler), keeping what was written.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

pick_python() {
    local c
    for c in "${PYTHON:-}" .venv/bin/python python3 python; do
        [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 && "$c" -c "import torch" 2>/dev/null \
            && { echo "$c"; return 0; }
    done
    return 1
}
PY="$(pick_python)" || { echo "gpu.sh: no python with torch found (set PYTHON=...)" >&2; exit 2; }

command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader 2>/dev/null
echo "python: $PY ($("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'))"

if command -v timeout >/dev/null 2>&1; then
    timeout -k 10 470 "$PY" benchmarks/gpu_bench.py "$@"
else
    "$PY" benchmarks/gpu_bench.py "$@"
fi
rc=$?
[ "$rc" -eq 124 ] && echo "gpu.sh: stopped by the 8-minute guard; the JSON holds every part finished" >&2
exit "$rc"
