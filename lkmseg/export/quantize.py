"""Post-training static INT8: ONNX Runtime's QDQ quantizer, per-channel weights, calibrated on
the run's training images, accepted only inside the accuracy gate.

One file serves two runtimes: ONNX Runtime executes the QDQ model with its int8 kernels and
OpenVINO turns the Q/DQ pairs into int8 convolutions (VNNI/AMX). Where the plain recipe misses
the gate, the fixed ladder ``RECIPES`` is tried in order — keep the first and last convolutions
in float, more calibration images, Percentile then Entropy calibration — and the report says
which recipe it took. A model that still misses is kept as ``model.int8.rejected.onnx`` (never
under the name engines load) with its figures.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lkmseg.config import RunConfig
from lkmseg.data.imageio import list_images, read_image
from lkmseg.data.transforms import preprocess
from lkmseg.errors import UserError
from lkmseg.files.layout import ONNX_FILES
from lkmseg.files.onnx_meta import INPUT_NAME, load_onnx, read_metadata, save_onnx, set_metadata

MAX_CALIB = 256  # never read more calibration images than this


@dataclass(frozen=True)
class Recipe:
    name: str
    images_factor: int = 1  # x the --calib-images count
    float_ends: bool = False  # first and last Conv stay in float
    method: str = "MinMax"  # onnxruntime.quantization.CalibrationMethod name
    percentile: float | None = None


RECIPES = (
    Recipe("per-channel QDQ, MinMax calibration"),
    Recipe("+ first and last convolutions in float", float_ends=True),
    Recipe("+ 4x the calibration images", images_factor=4, float_ends=True),
    Recipe("+ Percentile 99.999 calibration", images_factor=4, float_ends=True,
           method="Percentile", percentile=99.999),
    Recipe("+ Entropy calibration", images_factor=4, float_ends=True, method="Entropy"),
)


# ---------------------------------------------------------------------------- calibration set


def _dataset_items(root: Path, cfg: RunConfig) -> list[Path]:
    from lkmseg.data.datasets import find_items

    _, items = find_items(root, group_pattern=cfg.train.group_pattern, require_masks=False)
    keep = set(cfg.data.get("train_groups") or [])
    return [it.image for it in items if not keep or it.group in keep]


def _synthetic_items(cfg: RunConfig) -> list[Path]:
    from lkmseg.data.datasets import find_items, split_by_group
    from lkmseg.data.synth import default_dataset

    _, items = find_items(default_dataset(progress=False), require_masks=False)
    train, _ = split_by_group(items, cfg.train.val_frac, cfg.train.seed)
    return [it.image for it in train]


def calibration_paths(cfg: RunConfig, calib_dir: Path | None) -> tuple[list[Path], str]:
    """Calibration images: ``calib_dir`` (a dataset or an image folder), else the run's
    training images (config.json's data source, training groups only), else the embedded
    synthetic set's training split. Returns (paths, where they came from)."""
    if calib_dir is not None:
        calib_dir = Path(calib_dir)
        if not calib_dir.is_dir():
            raise UserError(f"--calib {calib_dir}: not a folder; pass a dataset or image folder")
        try:
            paths = _dataset_items(calib_dir, RunConfig())
        except UserError:
            paths = list_images(calib_dir)
        if not paths:
            raise UserError(f"--calib {calib_dir}: no images found; pass a folder of images")
        return paths, f"--calib {calib_dir}"
    data = cfg.data or {}
    src, layout = data.get("source"), data.get("layout")
    if src and layout in ("carvana", "folders", "synthetic") and Path(src).is_dir():
        paths = _dataset_items(Path(src), cfg)
        if paths:
            return paths, f"training images of the run ({src}, training groups)"
    return _synthetic_items(cfg), "embedded synthetic set (training split)"


def spread(paths: list[Path], n: int) -> list[Path]:
    """``n`` paths spread over the list (every car and view), not the first ``n``."""
    step = max(1, len(paths) // max(1, n))
    return paths[::step][:n]


class _Reader:
    """An onnxruntime CalibrationDataReader: one preprocessed batch at a time."""

    def __init__(self, paths: list[Path], size: tuple[int, int], batch: int) -> None:
        self.paths, self.size, self.batch = paths, size, batch
        self._it: Iterator[dict] | None = None

    def _batches(self) -> Iterator[dict]:
        for i in range(0, len(self.paths), self.batch):
            chunk = self.paths[i : i + self.batch]
            chunk += [chunk[-1]] * (self.batch - len(chunk))  # a static batch needs it full
            x = preprocess([read_image(p) for p in chunk], self.size).numpy()
            yield {INPUT_NAME: x}

    def get_next(self) -> dict | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


# ---------------------------------------------------------------------------- quantizing


def end_convs(model_path: Path) -> list[str]:
    """Names of the first and the last Conv node (graph order is topological)."""
    convs = [n.name for n in load_onnx(model_path).graph.node if n.op_type == "Conv"]
    return sorted({convs[0], convs[-1]}) if convs else []


def static_batch(model_path: Path) -> int:
    dim = load_onnx(model_path).graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else 1


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The quantizer logs warnings through the root logger (e.g. 'consider pre-processing')."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def quantize(fp32: Path, out: Path, recipe: Recipe, paths: list[Path], size: tuple[int, int],
             reduce_range: bool) -> dict:
    """Write the QDQ model of ``recipe`` to ``out`` (tagged precision int8); returns what was
    done, for the report."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    exclude = end_convs(fp32) if recipe.float_ends else []
    extra = {"CalibPercentile": recipe.percentile} if recipe.percentile else {}
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=out.parent) as tmp, _quiet():
        raw = Path(tmp) / ONNX_FILES["int8"]
        quantize_static(str(fp32), str(raw), _Reader(paths, size, static_batch(fp32)),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                        calibrate_method=getattr(CalibrationMethod, recipe.method),
                        extra_options=extra)
        model = load_onnx(raw)
    meta = read_metadata(fp32)
    meta.update(precision="int8", int8_recipe=recipe.name)
    set_metadata(model, meta)
    save_onnx(model, out)
    return {"recipe": recipe.name, "calibration_images": len(paths),
            "calibrate_method": recipe.method, "percentile": recipe.percentile,
            "float_nodes": exclude, "per_channel": True, "activations": "uint8",
            "weights": "int8", "reduce_range": reduce_range}


def images_for(recipe: Recipe, pool: list[Path], n: int) -> list[Path]:
    return spread(pool, min(MAX_CALIB, n * recipe.images_factor))


def first_file(paths: list[Path]) -> np.ndarray:
    """Read one image early so an unreadable calibration set fails before minutes of work."""
    return read_image(paths[0])
