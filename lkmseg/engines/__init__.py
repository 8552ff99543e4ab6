"""Engines: one interface (``Engine``), one file per runtime, and a factory.

>>> eng = load_engine("auto", "runs/1x5")          # fastest available here
>>> logits = eng(preprocess(images, eng.config.size))  # (B, 1, H, W) float32 numpy
"""

from lkmseg.engines.base import PRECISIONS, Engine
from lkmseg.engines.factory import (
                                    ENGINE_NAMES,
                                    auto_plan,
                                    canonical_name,
                                    engine_class,
                                    load_engine,
)
from lkmseg.engines.source import ModelSource, resolve_model

__all__ = ["ENGINE_NAMES", "PRECISIONS", "Engine", "ModelSource", "auto_plan",
           "canonical_name", "engine_class", "load_engine", "resolve_model"]
