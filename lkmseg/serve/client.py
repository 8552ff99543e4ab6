"""A small client for ``lkmseg serve`` over HTTP or gRPC (tritonclient), for scripts and tests.

    with SegmentClient("localhost:8000") as c:          # or ("localhost:8001", "grpc")
        masks = c.segment(images)                        # RGB uint8 (B, H, W, 3) -> (B, H, W)

One client per thread: tritonclient's clients are not thread-safe.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lkmseg.errors import UserError
from lkmseg.serve.contract import INPUT, LOGITS, MASK, MODEL_NAME, missing_extra

PROTOCOLS = ("http", "grpc")


def _module(protocol: str) -> Any:
    if protocol not in PROTOCOLS:
        raise UserError(f"protocol {protocol!r}: choose http or grpc")
    try:
        if protocol == "http":
            import tritonclient.http as tc
        else:
            import tritonclient.grpc as tc
    except ImportError as e:
        raise missing_extra(e) from e
    return tc


class SegmentClient:
    def __init__(self, url: str, protocol: str = "http", model: str = MODEL_NAME,
                 timeout_s: float = 120.0) -> None:
        self.protocol, self.model, self.timeout_s = protocol, model, timeout_s
        self._tc = _module(protocol)
        if protocol == "http":
            self._client = self._tc.InferenceServerClient(
                url, connection_timeout=timeout_s, network_timeout=timeout_s)
        else:
            self._client = self._tc.InferenceServerClient(url)

    def infer(self, images: np.ndarray, outputs: tuple[str, ...] = (MASK,),
              datatype: str = "UINT8") -> dict[str, np.ndarray]:
        """Send one request (a batch of same-sized images) as is; returns the outputs."""
        inp = self._tc.InferInput(INPUT, list(images.shape), datatype)
        inp.set_data_from_numpy(images)
        kw: dict[str, Any] = {}
        if self.protocol == "http":
            wanted = [self._tc.InferRequestedOutput(n, binary_data=True) for n in outputs]
        else:
            wanted = [self._tc.InferRequestedOutput(n) for n in outputs]
            kw["client_timeout"] = self.timeout_s
        res = self._client.infer(self.model, [inp], outputs=wanted, **kw)
        return {n: res.as_numpy(n) for n in outputs}

    def segment(self, images: np.ndarray, logits: bool = False) -> Any:
        """RGB uint8 (H, W, 3) or (B, H, W, 3) -> mask(s) uint8 {0,1} at the same size
        (and the logits too, as a second value, with ``logits=True``)."""
        single = images.ndim == 3
        batch = images[None] if single else images
        out = self.infer(np.ascontiguousarray(batch, dtype=np.uint8),
                         (MASK, LOGITS) if logits else (MASK,))
        masks = out[MASK][0] if single else out[MASK]
        if not logits:
            return masks
        return masks, (out[LOGITS][0] if single else out[LOGITS])

    def ready(self) -> bool:
        return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SegmentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def batch_stats(http_url: str, model: str = MODEL_NAME) -> dict[int, int]:
    """{batch size: executions} that Triton's dynamic batcher ran for ``model`` so far
    (the statistics extension, through tritonclient; ``lkmseg serve`` leaves it open)."""
    tc = _module("http")
    client = tc.InferenceServerClient(http_url.split("://", 1)[-1], network_timeout=10.0)
    try:
        stats = client.get_inference_statistics(model)
    finally:
        client.close()
    out: dict[int, int] = {}
    for entry in stats.get("model_stats", []):
        for b in entry.get("batch_stats", []):
            size = int(b["batch_size"])
            out[size] = out.get(size, 0) + int(b["compute_infer"]["count"])
    return out
