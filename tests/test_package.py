"""The wheel ships the sample images, masks and video, where ``SAMPLES_DIR`` finds them once
installed (export's parity check and bench fall back on them)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lkmseg.files.layout import SAMPLES_DIR

ROOT = Path(__file__).resolve().parents[1]


def _build_wheel(tmp_path: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of the sources (the build leaves nothing in the repo)."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools (the build backend) is not installed")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "lkmseg", src / "lkmseg",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "--no-cache-dir", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    wheels = list(out.glob("lkmseg-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_ships_the_samples_and_type_marker(tmp_path):
    expected = sorted(str(p.relative_to(SAMPLES_DIR.parent.parent)).replace(os.sep, "/")
                      for p in SAMPLES_DIR.rglob("*") if p.is_file())
    assert len([e for e in expected if e.endswith(".jpg")]) >= 4, expected
    assert "lkmseg/samples/video.mp4" in expected
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert "lkmseg/py.typed" in names  # PEP 561: type checkers read the annotations
        for name in expected:
            assert name in names, f"{name} missing from {wheel.name}"
            assert z.read(name) == (SAMPLES_DIR.parent.parent / name).read_bytes(), name
        z.extractall(tmp_path / "site")
    # installed (unpacked) elsewhere, the package finds its own copy
    code = ("from lkmseg.files.layout import SAMPLES_DIR as S; "
            "print(S.resolve()); print(len(list((S / 'images').glob('*.jpg'))))")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, check=False,
                       env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert r.returncode == 0, r.stderr[-2000:]
    where, n = r.stdout.split()
    assert Path(where) == (tmp_path / "site" / "lkmseg" / "samples").resolve()
    assert int(n) == len([e for e in expected if e.endswith(".jpg")])
