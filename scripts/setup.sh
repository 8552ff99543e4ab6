#!/usr/bin/env bash
# Set up lkmseg in ./.venv on a fresh machine, in minutes:
#  - reuses a torch that is already installed (e.g. the CUDA build on a GPU machine: the venv
#    sees system site-packages, so torch is never reinstalled);
#  - otherwise installs torch 2.13: the CPU build where no NVIDIA GPU is present (from a local
#    wheel if pip's find-links has one, else from PyTorch's CPU index), the default CUDA build
#    where `nvidia-smi` works.
#  - installs lkmseg (editable) with its dependencies; `--dev` adds the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${LKMSEG_VENV:-.venv}
EXTRAS=()
[ "${1:-}" = "--dev" ] && EXTRAS+=(dev)

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv --system-site-packages "$VENV"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install --quiet --disable-pip-version-check)

if "$VPY" -c "import torch" 2>/dev/null; then
  echo "setup: using the installed torch $("$VPY" -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  echo "setup: NVIDIA GPU found: installing the CUDA build of torch"
  "${PIP[@]}" "torch==2.13.0"
elif "$VPY" -m pip download --quiet --no-deps --no-index -d "$(mktemp -d)" "torch==2.13.0+cpu" \
     >/dev/null 2>&1; then
  echo "setup: installing the local CPU build of torch"
  "${PIP[@]}" "torch==2.13.0+cpu"
else
  echo "setup: no GPU: installing the CPU build of torch from PyTorch's CPU index"
  "${PIP[@]}" "torch==2.13.0+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
fi

# onnxruntime and onnxruntime-gpu share one module folder: never install both. Keep the one
# present; otherwise the `cpu` extra brings onnxruntime (`gpu` brings onnxruntime-gpu + TensorRT).
if ! "$VPY" -c "import onnxruntime" 2>/dev/null; then
  EXTRAS+=(cpu)
fi
SPEC="."
if [ ${#EXTRAS[@]} -gt 0 ]; then SPEC=".[$(IFS=,; echo "${EXTRAS[*]}")]"; fi
"${PIP[@]}" -e "$SPEC"
echo "setup: ready ($("$VPY" -c 'import torch, lkmseg; print("lkmseg", lkmseg.__version__, "torch", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")'))"
