"""Where the measured precision/layout shows up: `train`'s start line, config.json and
summary.json; the torch engine's layout choice and its cache; torch bench rows per precision;
the compare report's training speed per precision."""

import json

import numpy as np
import pytest
import torch
from conftest import write_pairs
from typer.testing import CliRunner

from lkmseg import hw, tune
from lkmseg.bench import rows as rowlib
from lkmseg.bench.throughput import Throughput
from lkmseg.bench.train_speed import pair_ratios, report_lines
from lkmseg.cli.app import app
from lkmseg.config import RunConfig
from lkmseg.engines.torch_engine import TorchEngine
from lkmseg.models import ModelConfig, build_model
from lkmseg.train import runtime

AMX = frozenset({"avx512f", "avx512_bf16", "amx_bf16"})
AVX2 = frozenset({"avx2"})


@pytest.fixture
def flags(monkeypatch):
    def set_flags(f):
        monkeypatch.setattr(hw, "cpu_flags", lambda: f)
    return set_flags


def test_train_prints_and_records_the_choice(tmp_path, monkeypatch, flags):
    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "cache"))
    flags(AMX)
    figs = {"fp32 channels_last": 3.0, "fp32 NCHW": 2.0, "bf16 channels_last": 1.0,
            "bf16 NCHW": 4.0}
    monkeypatch.setattr(runtime, "measure_candidates",
                        lambda m, d, shape, cands, budget_s=0: (figs, shape[0]))
    monkeypatch.setattr(hw, "busy", lambda: (False, ""))
    data = write_pairs(tmp_path / "data", "carvana", groups=3, views=3, size=(48, 64))
    args = ["train", "--block", "1x5", "--width", "4", "--depth", "3", "--size", "32x48",
            "--batch-size", "4", "--steps", "2", "--val-frac", "0.34", "--data", str(data),
            "--out", str(tmp_path / "runs")]
    r = CliRunner().invoke(app, [*args, "--name", "a"])
    assert r.exit_code == 0, r.output
    assert "measuring precision x layout (once per machine/config)" in r.output
    assert "precision/layout: bf16 NCHW" in r.output and "bf16 NCHW 4.0" in r.output
    run = tmp_path / "runs" / "a"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["runtime"]["precision"] == "bf16" and cfg["runtime"]["channels_last"] is False
    assert cfg["train"]["amp"] == "auto"  # the setting stays; the choice is recorded beside it
    s = json.loads((run / "summary.json").read_text())
    assert s["precision"] == "bf16" and s["channels_last"] is False and "auto" in s["precision_why"]
    r = CliRunner().invoke(app, [*args, "--name", "b"])  # same machine/config: cached
    assert r.exit_code == 0 and "measuring precision" not in r.output and "cached" in r.output
    (tmp_path / "cache" / "autotune.json").unlink()  # a resumed run keeps its own choice
    r = CliRunner().invoke(app, ["train", "--resume", str(run), "--steps", "3"])
    assert r.exit_code == 0, r.output
    assert "measuring precision" not in r.output and "kept from this run's start" in r.output
    assert json.loads((run / "summary.json").read_text())["precision"] == "bf16"
    r = CliRunner().invoke(app, [*args, "--name", "c", "--amp", "off", "--channels-last", "on"])
    assert r.exit_code == 0 and "precision/layout: fp32 channels_last" in r.output
    assert json.loads((tmp_path / "runs" / "c" / "summary.json").read_text())["precision"] == "fp32"


def _engine(**kw):
    cfg = RunConfig(model=ModelConfig(block="5x5", width=2, depth=2), size=(32, 32))
    torch.manual_seed(0)
    return TorchEngine(build_model(cfg.model), cfg, device="cpu", **kw)


def test_torch_engine_measures_layout_once_per_shape_and_caches(tmp_path, monkeypatch, flags):
    monkeypatch.setenv("LKMSEG_CACHE", str(tmp_path / "cache"))
    flags(AVX2)
    seen = []
    real = tune.time_candidates

    def spy(fns, budget_s, rounds=3, clock=None):
        seen.append(sorted(fns))
        return real(fns, budget_s, rounds=1)
    monkeypatch.setattr(tune, "time_candidates", spy)
    monkeypatch.setattr(hw, "busy", lambda: (False, ""))
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    eng = _engine(precision="auto")  # no native bf16 here: fp32 layouts only
    y = eng(x)
    assert seen == [["fp32 NCHW", "fp32 channels_last"]] and y.shape == (2, 1, 32, 32)
    eng(x)
    eng(x[:1])  # a new shape is measured once too
    assert len(seen) == 2 and set(eng.choices) == {(2, 3, 32, 32), (1, 3, 32, 32)}
    assert eng.precision == "fp32" and "(measured)" in eng.describe()
    again = _engine(precision="auto")
    np.testing.assert_allclose(again(x), y, atol=1e-5)
    assert len(seen) == 2  # from the cache
    forced = _engine(channels_last=False)
    forced(x)
    assert len(seen) == 2 and not forced.channels_last and "NCHW" in forced.describe()
    flags(AMX)
    _engine(precision="auto")(x)
    assert "bf16 channels_last" in seen[-1] and len(seen[-1]) == 4


def test_torch_bf16_rows_only_where_native(flags, tmp_path):
    combos = rowlib.combos(["torch", "onnxruntime"], "cpu")
    assert combos[0] == ("torch", "fp32") and ("onnxruntime", "fp16") in combos
    assert ("torch", "fp16") not in combos  # fp16 autocast is a GPU path
    flags(AVX2)
    v = rowlib.before_loading(tmp_path, "torch", "bf16", "cpu")
    assert v.status.startswith("skipped: torch bf16 not measured") and "avx512_bf16" in v.status
    flags(AMX)  # native: it gets as far as looking for the weights
    v = rowlib.before_loading(tmp_path, "torch", "bf16", "cpu")
    assert v.status.startswith("skipped: no model.safetensors"), v.status


def test_tf32_rows_only_when_asked_and_only_on_cuda(tmp_path):
    assert ("torch", "tf32") not in rowlib.combos(["torch", "onnxruntime"], "cuda")
    combos = rowlib.combos(["torch", "onnxruntime"], "cpu", tf32=True)
    assert combos[0] == ("torch", "fp32") and ("torch", "tf32") in combos
    assert ("onnxruntime", "tf32") not in combos
    v = rowlib.before_loading(tmp_path, "torch", "tf32", "cpu")
    assert v.status == ("skipped: tf32 is a CUDA mode (compute capability >= 8.0); on a CPU "
                        "fp32 is fp32"), v.status
    v = rowlib.before_loading(tmp_path, "torch", "fp64", "cpu")
    assert "choose from auto, fp32, fp16, bf16, tf32" in v.status


def test_torch_fp32_on_cuda_means_ieee_fp32_and_tf32_means_tf32():
    from lkmseg.engines.torch_engine import _tf32

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        with _tf32(False):  # fp32 on CUDA
            assert not torch.backends.cuda.matmul.allow_tf32
            assert not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        with _tf32(None):  # CPU or reduced precision: untouched
            assert torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        with _tf32(True):  # the "tf32" precision (bench --tf32)
            assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _t(ips, cl=False, prec="fp32"):
    return Throughput("x", ips, ips, [], prec, cl)


def test_speed_per_precision_report():
    blocks = {"3x3": "3x3", "5x5": "5x5", "1x5": "1x5", "gcn5": "gcn5"}
    assert pair_ratios({"5x5": 10.0, "1x5": 14.0, "3x3": 9.0, "gcn5": 12.0}, blocks) == \
        pytest.approx({"1x5/5x5": 1.4, "gcn5/5x5": 1.2})
    best = {"fp32": {"5x5": _t(10.0, True), "1x5": _t(14.0, True)},
            "bf16": {"5x5": _t(20.0, prec="bf16"), "1x5": _t(22.0, True, "bf16")}}
    text = "\n".join(report_lines(best, blocks))
    assert "| model | fp32 img/s | bf16 img/s |" in text
    assert "| 5x5 | 10.0 (channels_last) | 20.0 (NCHW) |" in text
    assert "1x5/5x5 training speed-up: fp32 1.40×, bf16 1.10×" in text


def test_native_precisions_follow_the_probes(flags, monkeypatch):
    flags(AMX)
    assert hw.native_precisions("cpu") == ["fp32", "bf16"] and hw.native_bf16("cpu")
    flags(AVX2)
    assert hw.native_precisions("cpu") == ["fp32"] and not hw.native_bf16("cpu")
    monkeypatch.setattr(hw, "cuda_capability", lambda d=None: (7, 5))
    assert hw.native_precisions(torch.device("cuda")) == ["fp32", "fp16"]
    monkeypatch.setattr(hw, "cuda_capability", lambda d=None: (9, 0))
    assert hw.native_precisions(torch.device("cuda")) == ["fp32", "bf16"]


def test_machine_probes_read_this_machine():
    info = hw.machine_info("cpu")
    assert info["cpu"] and isinstance(info["cpu_flags"], list)
    assert set(info["cpu_flags"]) <= set(hw.RELEVANT_FLAGS)
    assert info["native_precisions"][0] == "fp32"
    assert info["torch"] in hw.machine_key("cpu")


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    """One rank: every rank would measure a different winner; rank 0's must be used by all."""
    import os

    import torch.distributed as dist

    from lkmseg.config import TrainConfig
    from lkmseg.train.runtime import build_runtime

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      LKMSEG_CACHE=f"{out}/cache{rank}")
    hw.cpu_flags = lambda: AMX
    hw.busy = lambda: (False, "")
    fast = "bf16 NCHW" if rank == 0 else "fp32 channels_last"
    runtime.measure_candidates = lambda m, d, shape, cands, budget_s=0: (
        {runtime.label(p, cl): 9.0 if runtime.label(p, cl) == fast else 1.0 for p, cl in cands},
        shape[0])
    cfg = RunConfig(model=ModelConfig(block="1x5", width=2, depth=2), size=(32, 32),
                    train=TrainConfig(batch_size=2))
    rt = build_runtime(cfg, "cpu", build_model(cfg.model))
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"label": rt.choice.label, "cl": rt.channels_last,
                   "bf16": rt.amp_dtype is torch.bfloat16}, f)
    dist.destroy_process_group()


def test_ddp_ranks_use_rank0s_choice(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert got[0] == got[1] == {"label": "bf16 NCHW", "cl": False, "bf16": True}
    assert not (tmp_path / "cache1").exists()  # rank 1 neither measured nor wrote a cache
