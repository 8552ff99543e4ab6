"""REPO/README.md for a Triton model repository written by ``lkmseg export --triton``.

It lists every lkmseg model in the repository (found by the ``lkmseg_*`` parameters in each
``config.pbtxt``), so exporting several runs into one repository keeps one accurate README.
"""

from __future__ import annotations

import re
from pathlib import Path

from lkmseg.fsutil import write_text

_FIELD = re.compile(r'^(name|backend): "([^"]*)"$|^max_batch_size: (-?\d+)$', re.M)
_PARAM = re.compile(r'key: "(lkmseg_\w+)"\s*value \{\s*string_value: "((?:[^"\\]|\\.)*)"', re.M)

_HEADER = """\
# Triton model repository (written by `lkmseg export RUN --triton REPO`)

Run it with NVIDIA Triton Inference Server (the container ships the onnxruntime, openvino
and tensorrt backends):

```bash
docker run --rm -p 8000:8000 -p 8001:8001 -p 8002:8002 -v $PWD:/models \\
  nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models
```

A TensorRT plan only runs on the TensorRT version and GPU architecture it was built with
(`lkmseg_tensorrt_version`, `lkmseg_gpu` below): pick the Triton container with that
TensorRT, or rebuild the engine there with `lkmseg export RUN --trt`.

## Contract (the same for every model here)

These models take the *preprocessed* batch and return logits; the client does the pre- and
post-processing (for RGB images in and masks out, serve the run with `lkmseg serve` instead):

1. RGB uint8 image (H, W, 3) -> resize to the model's `lkmseg_size` with area interpolation
   (`cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)`).
2. float32, divided by 255, channels first: input `image` (B, 3, h, w).
3. output `logits` (B, 1, h, w) -> resize bilinearly (align_corners=False, e.g.
   `torch.nn.functional.interpolate`) back to (H, W) -> mask = logits > `lkmseg_logit_threshold`
   (the logit of the sigmoid threshold `lkmseg_threshold`).

Dynamic batching is on (`max_batch_size` images, 2 ms queue delay by default; edit
`dynamic_batching` and `instance_group` in each `config.pbtxt` to tune). Every `config.pbtxt`
spells the contract out in its `lkmseg_*` parameters, which the backends ignore.

## Models

| model | backend | max batch | block | size | threshold | precision |
|---|---|---|---|---|---|---|
"""


def _describe(config: Path) -> dict[str, str] | None:
    text = config.read_text(errors="replace")
    params = dict(_PARAM.findall(text))
    if "lkmseg_size" not in params:
        return None  # not an lkmseg model
    fields: dict[str, str] = {}
    for m in _FIELD.finditer(text):
        key = m.group(1) or "max_batch_size"
        fields.setdefault(key, m.group(2) if m.group(1) else m.group(3))
    return {**fields, **params}


def write_readme(repo: Path) -> Path:
    rows = []
    for config in sorted(repo.glob("*/config.pbtxt")):
        d = _describe(config)
        if d is None:
            continue
        trt = (f" (TensorRT {d['lkmseg_tensorrt_version']}, {d.get('lkmseg_gpu', '?')})"
               if "lkmseg_tensorrt_version" in d else "")
        rows.append(f"| `{d.get('name', config.parent.name)}` | {d.get('backend', '?')}{trt} | "
                    f"{d.get('max_batch_size', '?')} | {d.get('lkmseg_block', '?')} | "
                    f"{d['lkmseg_size']} | {d.get('lkmseg_threshold', '?')} | "
                    f"{d.get('lkmseg_precision', '?')} |")
    path = repo / "README.md"
    write_text(path, _HEADER + "\n".join(rows) + "\n")
    return path
