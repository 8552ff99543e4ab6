"""Serving on NVIDIA Triton Inference Server (through PyTriton): ``lkmseg serve``.

Triton does the serving (HTTP and gRPC on the KServe v2 protocol, dynamic batching, health,
readiness, Prometheus metrics); lkmseg binds one Python callable to it that runs the project's
own preprocessing, an engine (``lkmseg.engines``) and postprocessing, so a served mask equals
``lkmseg predict``'s.

    request:  "image"  uint8 (B, H, W, 3) RGB, any H x W
    response: "mask"   uint8 (B, H, W), values {0, 1}, at the image's own size
              "logits" float32 (B, H, W) at the image's own size (``--logits`` only)

Needs the optional ``serve`` extra: ``pip install 'lkmseg[serve]'``.
"""

from lkmseg.serve.contract import INPUT, LOGITS, MASK, MODEL_NAME
from lkmseg.serve.segmenter import BadRequest, Segmenter
from lkmseg.serve.server import ServeOptions, Server, serve

__all__ = ["INPUT", "LOGITS", "MASK", "MODEL_NAME", "BadRequest", "Segmenter", "ServeOptions",
           "Server", "serve"]
