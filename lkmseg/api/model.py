"""``lkmseg.load`` and ``Model``: a trained model on one engine, for predict, save, share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lkmseg.config import RunConfig
from lkmseg.engines import Engine, ModelSource, load_engine, resolve_model
from lkmseg.errors import UserError
from lkmseg.files.layout import EXPORT_DIR
from lkmseg.predict.results import Result, iter_results

if TYPE_CHECKING:
    from lkmseg.api.validate import ValReport
    from lkmseg.export import ExportResult

PathLike = str | os.PathLike


class Model:
    """A trained U-Net loaded on one engine (``lkmseg.load`` makes it).

    >>> model = lkmseg.load("runs/1x5_128x128")
    >>> results = model.predict("car.jpg")            # list of Result
    >>> results[0].mask                                 # uint8 (H, W), 0/1
    >>> model.save_pretrained("car-seg")                # lkmseg.load("car-seg") gives the same
    """

    def __init__(self, engine: Engine, source: ModelSource, summary: dict | None = None,
                 name: str | None = None) -> None:
        self.engine, self.source, self.summary = engine, source, summary
        self.name = name or Path(source.path).name

    @property
    def config(self) -> RunConfig:
        """The run's config: block, size, threshold, normalization, training options."""
        return self.engine.config

    @property
    def path(self) -> Path:
        return Path(self.source.path)

    @property
    def block(self) -> str:
        return self.config.model.block

    def predict(self, source: Any, *, stream: bool = False, logits: bool = False,
                threshold: float | None = None, batch_size: int = 4,
                max_frames: int | None = None) -> list[Result] | Iterator[Result]:
        """Masks for ``source``: an RGB uint8 array (H, W, 3) or a batch (B, H, W, 3), a list,
        an image path, a folder, a glob, an http(s) URL, a video, an rtsp:// stream or a
        camera index. Returns one ``Result`` per image or frame (``.mask`` uint8 0/1 at the
        image's size, ``.source``, ``.frame``; ``.logits`` with ``logits=True``); with
        ``stream=True`` a generator that yields them as they come (videos, cameras, large
        folders).

        >>> for r in model.predict(0, stream=True, max_frames=100):   # the first camera
        ...     print(r.frame, r.coverage)
        """
        from lkmseg.predict.streams import open_input

        if batch_size < 1:
            raise UserError(f"batch_size {batch_size}: must be >= 1")
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise UserError(f"threshold {threshold}: must be between 0 and 1 (exclusive)")
        if max_frames is not None and max_frames < 1:
            raise UserError(f"max_frames {max_frames}: must be >= 1")
        src = open_input(source, max_frames)
        gen = iter_results(self.engine, src, threshold, batch_size, logits)
        return gen if stream else list(gen)

    __call__ = predict

    def save_pretrained(self, path: PathLike, *, export: bool = False) -> Path:
        """Write ``config.json`` + ``model.safetensors`` + a model card (README.md) to
        ``path`` (with ``export=True`` also the run's ONNX files); ``lkmseg.load(path)``
        rebuilds the model with the same masks.

        >>> model.save_pretrained("car-seg-1x5")
        """
        from lkmseg.hub import save_folder

        return save_folder(path, self.config, self._weights(), self.summary,
                           self._export_dir() if export else None, self.name)

    def push_to_hub(self, repo_id: str, *, token: str | None = None,
                    private: bool | None = None, revision: str | None = None,
                    commit_message: str | None = None, export: bool = False) -> str:
        """Upload the saved model (``save_pretrained``'s folder) to the Hugging Face Hub
        repository ``repo_id`` (created if needed); returns the commit URL. Needs the
        ``hub`` extra.

        >>> model.push_to_hub("me/car-seg-1x5")
        """
        from lkmseg.hub import push, save_folder

        weights, ex = self._weights(), self._export_dir() if export else None
        return push(lambda d: save_folder(d, self.config, weights, self.summary, ex, repo_id),
                    repo_id, token=token, private=private, revision=revision,
                    commit_message=commit_message)

    def export(self, **options: Any) -> ExportResult:
        """Export the run this model was loaded from (``lkmseg.export``'s options).

        >>> model.export(int8=False).files["onnx_fp32"]
        """
        from lkmseg.api.tasks import export

        if self.source.run_dir is None:
            raise UserError(f"{self.path}: export needs a run folder or saved model (with "
                            "config.json and weights); this model was loaded from a file")
        return export(self.source.run_dir, **options)

    def val(self, data: PathLike, **options: Any) -> ValReport:
        """Dice and IoU per image and overall on a labelled folder (``lkmseg.val``).

        >>> model.val("data/carvana").dice
        """
        from lkmseg.api.validate import evaluate_model

        return evaluate_model(self, data, **options)

    def _weights(self) -> Path:
        if self.source.weights is None:
            raise UserError(f"{self.path}: no PyTorch weights (model.safetensors) here; "
                            "save_pretrained needs a run folder or a saved model")
        return self.source.weights

    def _export_dir(self) -> Path | None:
        run = self.source.run_dir
        return run / EXPORT_DIR if run is not None and (run / EXPORT_DIR).is_dir() else None

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<lkmseg.Model {self.name}: {self.block}, {self.engine.describe()}>"


def local_path(source: Any) -> Path:
    """A local folder/file for ``source``: a path, a ``Run``, or a Hub repo id (downloaded)."""
    from lkmseg.hub import HUB_EXTRA, download, parse_repo_id

    if isinstance(source, os.PathLike):
        return Path(os.fspath(source))
    if not isinstance(source, str):
        raise UserError(f"cannot load a model from {type(source).__name__}: pass a run "
                        "folder, an export folder, a saved model or a Hub repository id")
    repo = parse_repo_id(source)
    if repo is None:
        return Path(source)
    try:
        import huggingface_hub  # noqa: F401 — only to tell a typo from a missing extra
    except ImportError:
        raise UserError(f"{source}: not found; pass a run folder, an export folder or a saved "
                        f"model (or, for a Hugging Face Hub repository id, {HUB_EXTRA})"
                        ) from None
    return download(*repo)


def load(source: Any, engine: str = "auto", precision: str | None = None,
         device: str = "auto") -> Model:
    """Load a model: a run folder (or a ``Run``), an export folder, a saved-model folder, a
    model file (.onnx, .engine, .safetensors) or a Hugging Face Hub repository id.

    ``engine``: auto (the fastest measured here, inside export's accuracy gate), torch,
    onnxruntime, openvino or tensorrt; ``precision``: fp32, fp16, bf16 or int8 where the
    engine has it; ``device``: auto, cpu or cuda.

    >>> model = lkmseg.load("runs/1x5_128x128", engine="onnxruntime")
    >>> model = lkmseg.load("me/car-seg-1x5")            # from the Hugging Face Hub
    """
    from lkmseg.hub import read_summary

    path = local_path(source)
    src = resolve_model(path)
    eng = load_engine(engine, src, precision, device)
    name = Path(os.fspath(source)).name if not isinstance(source, str) else \
        source.rstrip("/").split("@")[0].split("/")[-1]
    return Model(eng, src, read_summary(src.run_dir), name=name)


def val(model: Any, data: str | os.PathLike, engine: str = "auto", precision: str | None = None,
        device: str = "auto", **options: Any) -> ValReport:
    """Dice and IoU per image and overall of ``model`` (anything ``lkmseg.load`` takes, or a
    loaded ``Model``) on the labelled folder ``data``.

    Options: split ("all" or "val": the run's held-out groups), limit, batch_size,
    threshold, out (a folder for val_<engine>_<precision>.csv/.json).

    >>> rep = lkmseg.val("runs/1x5_128x128", "data/carvana", engine="onnxruntime")
    >>> rep.dice, rep.iou, rep.rows[0]["dice"]
    """
    from lkmseg.api.validate import evaluate_model

    m = model if isinstance(model, Model) else load(model, engine, precision, device)
    return evaluate_model(m, data, **options)
