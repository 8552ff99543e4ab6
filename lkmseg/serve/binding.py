"""Bind lkmseg's segmenters to a PyTriton ``Triton``: the model's tensors, its dynamic batcher
with a bounded queue, and the model file Triton runs (``triton_model.py`` in front of
PyTriton's own proxy, with the request limits as a model parameter).
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

from lkmseg.errors import UserError
from lkmseg.serve.contract import EXTRA_HINT, INPUT, LOGITS, MASK

HERE = Path(__file__).resolve().parent
# An instance waits this long for the first one's handshake: below the Python backend's 30 s
# wait for a stub (its stub-timeout-seconds default) and PyTriton's 60 s load request, so a
# start that still fails says why instead of timing out elsewhere.
HANDSHAKE_WAIT_S = 25.0
SUPPORTED = "0.7"  # the PyTriton minor version whose proxy model triton_model.py extends


def check_pytriton() -> None:
    """UserError unless the installed PyTriton is the version ``triton_model.py`` extends."""
    version = metadata.version("nvidia-pytriton")
    if not (version == SUPPORTED or version.startswith(SUPPORTED + ".")):
        raise UserError(f"nvidia-pytriton {version} is installed; lkmseg serve needs "
                        f"{SUPPORTED}.x: pip install 'nvidia-pytriton=={SUPPORTED}.*' "
                        f"(or {EXTRA_HINT})")


def triton_model_source() -> bytes:
    """The model file Triton runs (``triton_model.py``)."""
    return (HERE / "triton_model.py").read_bytes()


def _model_class(limits: dict[str, Any]) -> type:
    """PyTriton's Model, sending Triton lkmseg's model file and the limits with its own."""
    from pytriton.models.model import Model

    class LkmsegModel(Model):
        def _get_triton_model_config(self) -> Any:
            cfg = super()._get_triton_model_config()
            cfg.backend_parameters["lkmseg"] = json.dumps(limits)
            return cfg

        def get_proxy_model_files(self) -> dict[str, bytes]:
            files = super().get_proxy_model_files()
            v = self.model_version
            files[f"file:{v}/pytriton_model.py"] = files.pop(f"file:{v}/model.py")
            files[f"file:{v}/model.py"] = triton_model_source()
            files[f"file:{v}/lkmseg_limits.py"] = (HERE / "limits.py").read_bytes()
            return files

        def generate_model(self, model_repository: Path) -> None:
            raise NotImplementedError("lkmseg serve loads its model through Triton's API")

    return LkmsegModel


def model_config(o: Any) -> Any:
    """Dynamic batching up to ``max_batch`` images; at most ``max_queue`` requests wait, each
    at most ``queue_timeout_s`` (then Triton refuses it: the client gets an error)."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy
    from pytriton.model_config.common import TimeoutAction

    policy = QueuePolicy(timeout_action=TimeoutAction.REJECT, max_queue_size=o.max_queue,
                         default_timeout_microseconds=round(o.queue_timeout_s * 1e6))
    batcher = DynamicBatcher(max_queue_delay_microseconds=round(o.queue_delay_ms * 1000),
                             default_queue_policy=policy)
    return ModelConfig(max_batch_size=o.max_batch, batcher=batcher)


def make_model(o: Any, segmenters: list[Any], workspace: Any, triton_context: Any) -> Any:
    """The PyTriton Model for ``segmenters`` (one per instance) as model ``o.model_name``."""
    import numpy as np
    from pytriton.model_config import Tensor

    outputs = [Tensor(name=MASK, dtype=np.uint8, shape=(-1, -1))]
    if o.logits:
        outputs.append(Tensor(name=LOGITS, dtype=np.float32, shape=(-1, -1)))
    limits = {"max_side": o.max_side, "max_pixels": o.max_pixels,
              "handshake_wait_s": HANDSHAKE_WAIT_S}
    fns = segmenters if len(segmenters) > 1 else segmenters[0]
    return _model_class(limits)(
        model_name=o.model_name, model_version=1, inference_fn=fns,
        inputs=[Tensor(name=INPUT, dtype=np.uint8, shape=(-1, -1, 3))], outputs=outputs,
        config=model_config(o), workspace=workspace, triton_context=triton_context, strict=True)


def bind(triton: Any, o: Any, segmenters: list[Any]) -> None:
    """What ``Triton.bind`` does, with lkmseg's Model (PyTriton 0.7's internals: checked by
    ``check_pytriton`` and the tests)."""
    model = make_model(o, segmenters, triton._workspace, triton._triton_context)
    model.on_model_event(triton._on_model_event)
    triton._model_manager.add_model(model, triton.is_connected())
