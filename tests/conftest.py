"""Shared fixtures: tiny run folders made without training, sample data, real-data skip."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lkmseg.config import RunConfig, TrainConfig
from lkmseg.fsutil import write_json
from lkmseg.models import ModelConfig, build_model
from lkmseg.train.checkpoint import save_weights

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"

torch.set_num_threads(min(2, torch.get_num_threads()))


def make_run(run_dir: Path, block: str = "1x5", width: int = 4, depth: int = 3,
             size: tuple[int, int] = (64, 96), seed: int = 0) -> Path:
    """A run folder with random (but BN-calibrated) weights, as `lkmseg train` would lay out."""
    torch.manual_seed(seed)
    cfg = RunConfig(model=ModelConfig(block=block, width=width, depth=depth), size=size,
                    train=TrainConfig(steps=0), data={"source": "test"})
    model = build_model(cfg.model)
    model.train()
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        for _ in range(3):
            model(torch.rand(4, 3, *size))
    model.eval()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", cfg.to_dict())
    save_weights(run_dir / "model.safetensors", model)
    return run_dir


@pytest.fixture
def tiny_run(tmp_path: Path):
    """Factory: ``tiny_run(block="5x5", ...)`` -> path of a fresh run folder."""
    counter = iter(range(1000))

    def _make(block: str = "1x5", **kw) -> Path:
        return make_run(tmp_path / f"run{next(counter)}_{block}", block=block, **kw)

    return _make


@pytest.fixture
def carvana_dir() -> Path:
    """Real Carvana-mini data, or a clean skip when LKMSEG_CARVANA is not set."""
    d = os.environ.get("LKMSEG_CARVANA")
    if not d or not (Path(d) / "train").is_dir():
        pytest.skip("set LKMSEG_CARVANA to the carvana-mini folder to run real-data tests")
    return Path(d)


def rgb_noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
