"""The JSON sidecar beside a TensorRT engine (``model.engine.json``).

An engine is tied to the exact TensorRT version and GPU architecture that built it, and it
carries no preprocessing: the sidecar records both (and the run config), and loading checks it
before TensorRT ever sees the engine.
"""

from __future__ import annotations

import json
from pathlib import Path

from lkmseg.config import RunConfig
from lkmseg.errors import UserError
from lkmseg.files.layout import sidecar_path
from lkmseg.fsutil import write_json


def write_sidecar(engine_path: Path, sidecar: dict) -> None:
    write_json(sidecar_path(Path(engine_path)), sidecar)


def read_sidecar(engine_path: Path) -> dict:
    side = sidecar_path(engine_path)
    if not side.is_file():
        raise UserError(f"{engine_path}: no sidecar {side.name} beside it (TensorRT version "
                        "and GPU unknown); rebuild with `lkmseg export RUN --trt`")
    try:
        d = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{side}: unreadable sidecar ({type(e).__name__}); "
                        "rebuild with `lkmseg export RUN --trt`") from e
    if not isinstance(d, dict) or "tensorrt_version" not in d:
        raise UserError(f"{side}: not an lkmseg engine sidecar; rebuild with "
                        "`lkmseg export RUN --trt`")
    return d


def config_from_sidecar(engine: Path) -> RunConfig:
    return sidecar_config(read_sidecar(engine), engine)


def sidecar_config(sidecar: dict, engine: Path) -> RunConfig:
    """The run config recorded in ``sidecar`` (read from ``engine``'s sidecar); a UserError
    naming the sidecar when it is missing or invalid."""
    side = sidecar_path(Path(engine))
    cfg = sidecar.get("run_config")
    if not isinstance(cfg, dict):
        raise UserError(f"{side}: sidecar has no run_config (the model's size and "
                        "preprocessing); rebuild with `lkmseg export RUN --trt`")
    try:
        return RunConfig.from_dict(cfg)
    except UserError as e:
        why = e.__cause__ or e
        raise UserError(f"{side}: invalid run_config ({type(why).__name__}: {why}); rebuild "
                        "with `lkmseg export RUN --trt`") from e


def check_compatible(sidecar: dict, engine_path: Path, trt_version: str,
                     gpu: tuple[str, str]) -> list[str]:
    """Refuse (UserError) an engine built by another TensorRT or for another GPU architecture;
    return notes (e.g. same architecture, different GPU model — it runs, timings may differ)."""
    fix = "rebuild it here with `lkmseg export RUN --trt`"
    built_v = str(sidecar.get("tensorrt_version", "?"))
    if built_v != str(trt_version):
        raise UserError(f"{engine_path}: built with TensorRT {built_v}, this is TensorRT "
                        f"{trt_version} (engines are tied to the exact version); {fix}")
    built_cc = str(sidecar.get("compute_capability", "?"))
    if built_cc != gpu[1]:
        raise UserError(f"{engine_path}: built for {sidecar.get('gpu_name', '?')} (compute "
                        f"capability {built_cc}), this GPU is {gpu[0]} ({gpu[1]}); {fix}")
    notes = []
    if sidecar.get("gpu_name") != gpu[0]:
        notes.append(f"built on {sidecar.get('gpu_name')} (same architecture {built_cc}); "
                     "rebuild here for best speed")
    return notes
