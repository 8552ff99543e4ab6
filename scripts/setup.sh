#!/usr/bin/env bash
# Set up lkmseg in ./.venv on a fresh machine, in minutes.
#
#  - The venv is isolated (no system site-packages), so a dependency that lkmseg forgets to
#    declare fails here and in CI instead of on a user's machine.
#  - torch: where `nvidia-smi` works and the system Python already has a CUDA build of torch,
#    the venv reuses it (made with --system-site-packages, and says so): never a second
#    multi-GB download. Otherwise it installs torch 2.13: the CPU build where there is no
#    NVIDIA GPU (a local wheel when pip's configuration has one, else PyTorch's CPU index), the
#    default CUDA build where there is one.
#  - lkmseg (editable) with its declared dependencies; `--dev` adds the test tools.
#  - On x86-64, OpenVINO (the `openvino` extra: Intel CPUs' deployment runtime).
#  - On x86-64 Linux, the `serve` extra (PyTriton, whose wheel ships NVIDIA Triton Inference
#    Server, and tritonclient): `lkmseg serve`, benchmarks/serve_load.py.
#  - Where `nvidia-smi` works (or with --gpu; --no-gpu skips it): the `gpu` extra (TensorRT 10
#    for CUDA 13) and onnxruntime-gpu 1.31 (CUDA 13) in place of onnxruntime -- the two share
#    one module folder, so the CPU package is uninstalled first. Re-running `pip install -e .`
#    afterwards would bring the CPU onnxruntime back over it: re-run this script instead.
#
#  usage: bash scripts/setup.sh [--dev] [--gpu | --no-gpu]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${LKMSEG_VENV:-.venv}
EXTRAS=()
GPU=auto
for arg in "$@"; do
  case "$arg" in
    --dev) EXTRAS+=(dev hub tensorboard) ;;
    --gpu) GPU=yes ;;
    --no-gpu) GPU=no ;;
    *) echo "setup: unknown option '$arg': choose --dev, --gpu or --no-gpu" >&2; exit 2 ;;
  esac
done
ORT_GPU="onnxruntime-gpu[cuda,cudnn]~=1.31.0"  # CUDA 13; its TensorRT provider: libnvinfer.so.10

have_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; }
[ "$GPU" = auto ] && { if have_gpu; then GPU=yes; else GPU=no; fi; }

swap_in_onnxruntime_gpu() {
  echo "setup: GPU: $ORT_GPU (with its CUDA 13 / cuDNN 9 wheels) in place of onnxruntime"
  "$VPY" -m pip uninstall --quiet -y onnxruntime onnxruntime-gpu >/dev/null 2>&1 || true
  if ! "${PIP[@]}" "$ORT_GPU"; then
    echo "setup: could not install $ORT_GPU; putting the CPU onnxruntime back" >&2
    "${PIP[@]}" "onnxruntime>=1.18"
  fi
}
system_cuda_torch() {
  "$PY" -c "import torch, sys; sys.exit(0 if torch.version.cuda else 1)" >/dev/null 2>&1
}

if [ ! -x "$VENV/bin/python" ]; then
  if have_gpu && system_cuda_torch; then
    echo "setup: NVIDIA GPU and a CUDA torch in $("$PY" -c 'import sys; print(sys.prefix)'):"\
         "the venv reuses it (--system-site-packages)"
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install --quiet --disable-pip-version-check)

if "$VPY" -c "import torch" 2>/dev/null; then
  echo "setup: using the installed torch $("$VPY" -c 'import torch; print(torch.__version__)')"
elif have_gpu; then
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

case "$(uname -m)" in x86_64|amd64) EXTRAS+=(openvino) ;; esac
[ "$GPU" = yes ] && EXTRAS+=(gpu)
# nvidia-pytriton has manylinux wheels only (x86-64 and aarch64): add it where one exists here.
if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ]; then EXTRAS+=(serve); fi
SPEC="."
if [ ${#EXTRAS[@]} -gt 0 ]; then SPEC=".[$(IFS=,; echo "${EXTRAS[*]}")]"; fi
"${PIP[@]}" -e "$SPEC"
[ "$GPU" = yes ] && swap_in_onnxruntime_gpu
echo "setup: ready ($("$VPY" -c 'import torch, lkmseg; print("lkmseg", lkmseg.__version__, "torch", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")'))"
