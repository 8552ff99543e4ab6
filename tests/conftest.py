"""Shared fixtures: tiny run folders made without training, sample data, real-data skip."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lkmseg.config import RunConfig, TrainConfig
from lkmseg.files.layout import SAMPLES_DIR, TRAIN_LOG
from lkmseg.files.run_folder import save_weights
from lkmseg.fsutil import write_json
from lkmseg.models import ModelConfig, build_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = SAMPLES_DIR

torch.set_num_threads(min(2, torch.get_num_threads()))


def make_run(run_dir: Path, block: str = "1x5", width: int = 4, depth: int = 3,
             size: tuple[int, int] = (64, 96), seed: int = 0, decisive: bool = True) -> Path:
    """A run folder with random (but BN-calibrated) weights, as `lkmseg train` would lay out;
    its data is the package's samples (so export calibrates INT8 on those images, in seconds).

    ``decisive``: the head is rescaled so logits spread over about -4..4 (a random U-Net's are
    nearly constant), so masks are neither empty nor full and mask comparisons mean something.
    """
    torch.manual_seed(seed)
    cfg = RunConfig(model=ModelConfig(block=block, width=width, depth=depth), size=size,
                    train=TrainConfig(steps=0), data={"source": str(SAMPLES), "layout": "folders"})
    model = build_model(cfg.model)
    model.train()
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        for _ in range(3):
            model(torch.rand(4, 3, *size))
    model.eval()
    if decisive:  # logits spread over about -4..4 around 0: masks neither empty nor full
        with torch.no_grad():
            y = model(torch.rand(4, 3, *size))
            lo, med, hi = torch.quantile(y.flatten(), torch.tensor([0.01, 0.5, 0.99]))
            s = 8.0 / max(float(hi - lo), 1e-6)
            model.head.weight.mul_(s)
            model.head.bias.copy_((model.head.bias - med) * s)
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


def write_pairs(root: Path, layout: str = "carvana", groups: int = 4, views: int = 3,
                size: tuple[int, int] = (40, 60), seed: int = 0) -> Path:
    """A tiny dataset of ellipses on noise, in Carvana (train/, train_masks/*.gif) or
    folders (images/, masks/*.png) layout. Group ids are 12 hex digits like Carvana's."""
    import cv2
    from PIL import Image

    rng = np.random.default_rng(seed)
    img_dir = root / ("train" if layout == "carvana" else "images")
    msk_dir = root / ("train_masks" if layout == "carvana" else "masks")
    img_dir.mkdir(parents=True, exist_ok=True)
    msk_dir.mkdir(parents=True, exist_ok=True)
    h, w = size
    for g in range(groups):
        gid = f"{g + 1:012x}"
        for v in range(1, views + 1):
            img = rng.integers(60, 120, (h, w, 3), dtype=np.uint8)
            mask = np.zeros((h, w), np.uint8)
            c = (int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4)))
            axes = (int(rng.integers(w // 8, w // 4)), int(rng.integers(h // 8, h // 4)))
            cv2.ellipse(mask, c, axes, 0, 0, 360, 255, -1)
            img[mask > 0] = (200, 40, 40)
            stem = f"{gid}_{v:02d}"
            cv2.imwrite(str(img_dir / f"{stem}.jpg"), img[..., ::-1].copy())
            if layout == "carvana":
                Image.fromarray(mask).save(msk_dir / f"{stem}_mask.gif")
            else:
                cv2.imwrite(str(msk_dir / f"{stem}.png"), mask)
    return root


@pytest.fixture(scope="session")
def run(tmp_path_factory) -> Path:
    """A tiny 1x5 run exported once per session (tests/test_export.py's shared export),
    shared by the engine, predict, serve, Triton and GPU-fake tests. Files that need another
    run define their own ``run`` fixture, which takes precedence."""
    from test_export import shared_export

    run, res = shared_export(tmp_path_factory)
    assert res.exit_code == 0, res.output
    return run


def log_steps(path: Path) -> list[int]:
    """Steps of a CSV log; fails on a malformed line (wrong cell count, partial line)."""
    text = path.read_text()
    assert text.endswith("\n"), f"{path}: partial last line"
    lines = text.splitlines()
    header = lines[0].split(",")
    steps = []
    for line in lines[1:]:
        cells = line.split(",")
        assert len(cells) == len(header), f"{path}: malformed row {line!r}"
        steps.append(int(cells[0]))
    return steps


def wait_for_step(run: Path, step: int, p, timeout: float = 180) -> None:
    """Until the run's train log reaches ``step`` while process ``p`` runs (else fail)."""
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None:
        try:
            rows = (run / TRAIN_LOG).read_text().splitlines()
            if len(rows) > 1 and int(rows[-1].split(",")[0]) >= step:
                return
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.01)
    raise AssertionError(f"{run}: training never reached step {step} (exit {p.poll()})")
