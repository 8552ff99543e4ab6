"""`lkmseg compare` reuses a run only when its config.json matches the requested options."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_run

from lkmseg.bench.study import CompareOptions, _reusable, _run_config
from lkmseg.errors import UserError
from lkmseg.fsutil import write_json


def _run_made_with(o: CompareOptions, tmp_path: Path, block: str = "1x5") -> Path:
    run = make_run(tmp_path / "runs" / block, block=block, width=o.width, depth=o.depth,
                   size=o.size)
    cfg = _run_config(o, block)
    cfg.data = {"source": str(o.data) if o.data else "synthetic",
                "layout": "carvana" if o.data else "synthetic"}
    write_json(run / "config.json", cfg.to_dict())
    return run


def test_same_options_reuse(tmp_path):
    o = CompareOptions(size=(32, 48), budget_s=5, width=2, depth=2, out=tmp_path)
    run = _run_made_with(o, tmp_path)
    cfg = _reusable(o, run, _run_config(o, "1x5"))
    assert cfg is not None and cfg.size == (32, 48)


@pytest.mark.parametrize("change, named", [
    ({"size": (64, 64)}, "--size [32, 48] (now [64, 64])"),
    ({"budget_s": 10.0}, "--budget 5 (now 10.0)"),
    ({"width": 4}, "--width 2 (now 4)"),
    ({"lr": 1e-3}, "--lr 0.003 (now 0.001)"),
    ({"data": "DATA"}, "--data embedded synthetic (now "),
])
def test_other_options_refuse_naming_them(tmp_path, change, named):
    o = CompareOptions(size=(32, 48), budget_s=5, width=2, depth=2, out=tmp_path)
    run = _run_made_with(o, tmp_path)
    if change.get("data") == "DATA":
        (tmp_path / "data").mkdir()
        change = {"data": tmp_path / "data"}
    o2 = CompareOptions(**{**vars(o), **change})
    with pytest.raises(UserError) as e:
        _reusable(o2, run, _run_config(o2, "1x5"))
    msg = str(e.value)
    assert named in msg and str(run) in msg and "another --out" in msg


def test_no_run_yet(tmp_path):
    o = CompareOptions(out=tmp_path)
    assert _reusable(o, tmp_path / "runs" / "1x5", _run_config(o, "1x5")) is None
