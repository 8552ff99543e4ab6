"""Precision x layout choice: capability probes (monkeypatched), the measured pick, its cache,
and explicit settings. No timing asserts: timings are faked or only checked for shape."""

import json
import pickle

import pytest
import torch

from lkmseg import hw, tune
from lkmseg.errors import UserError
from lkmseg.models import ModelConfig, build_model
from lkmseg.train import runtime
from lkmseg.train.runtime import Choice, choose_precision_layout, describe_choice

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
AMX = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
AVX2 = frozenset({"avx2", "fma"})


@pytest.fixture
def model():
    return build_model(ModelConfig(block="1x5", width=2, depth=2))


@pytest.fixture
def cpu_flags(monkeypatch):
    def set_flags(flags: frozenset, name: str = "Test CPU"):
        monkeypatch.setattr(hw, "cpu_flags", lambda: flags)
        monkeypatch.setattr(hw, "cpu_model", lambda: name)
    return set_flags


@pytest.fixture
def fake_measure(monkeypatch):
    """Replace the timed steps by given images/s; records each measurement's candidates."""
    calls = []

    def install(ips: dict[str, float]):
        def measure(model, device, shape, cands, budget_s=0):
            labels = [runtime.label(p, cl) for p, cl in cands]
            calls.append(labels)
            return {k: ips[k] for k in labels}, shape[0]
        monkeypatch.setattr(runtime, "measure_candidates", measure)
        monkeypatch.setattr(hw, "busy", lambda: (False, ""))
        return calls
    return install


FIGS = {"fp32 channels_last": 12.5, "fp32 NCHW": 8.6, "bf16 channels_last": 17.2,
        "bf16 NCHW": 20.4}


def test_cpu_without_bf16_stays_fp32_and_says_so(model, cpu_flags, fake_measure, tmp_path):
    cpu_flags(AVX2, "AMD EPYC Test")
    calls = fake_measure(FIGS)
    c = choose_precision_layout("auto", "auto", model, CPU, (8, 32, 32), tmp_path / "c.json")
    assert c.precision == "fp32" and c.amp_dtype is None and not c.use_scaler
    assert calls == [["fp32 channels_last", "fp32 NCHW"]]  # bf16 is never a candidate
    assert c.channels_last  # the faster fp32 layout
    assert "fp32" in c.why and "avx512_bf16" in c.why and "AMD EPYC Test" in c.why
    assert "fp32 channels_last" in describe_choice(c)


def test_native_cpu_picks_fastest_measured(model, cpu_flags, fake_measure, tmp_path):
    cpu_flags(AMX)
    calls = fake_measure(FIGS)
    c = choose_precision_layout("auto", "auto", model, CPU, (8, 32, 32), tmp_path / "c.json")
    assert len(calls[0]) == 4
    assert (c.precision, c.channels_last) == ("bf16", False)
    assert c.amp_dtype is torch.bfloat16 and not c.use_scaler and c.measured == FIGS
    calls.clear()
    slow_bf16 = {**FIGS, "bf16 channels_last": 5.0, "bf16 NCHW": 4.0}
    fake_measure(slow_bf16)
    c = choose_precision_layout("auto", "auto", model, CPU, (4, 32, 32), tmp_path / "c.json")
    assert (c.precision, c.channels_last) == ("fp32", True)  # bf16 only when it is faster
    assert pickle.loads(pickle.dumps(c)) == c  # rank 0 broadcasts it under DDP


def test_emulated_bf16_gpu_gets_fp16_with_scaler(model, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # V100/T4 say so
    monkeypatch.setattr(hw, "cuda_capability", lambda device=None: (7, 0))
    c = choose_precision_layout("auto", "on", model, CUDA, (8, 32, 32))
    assert c.precision == "fp16" and c.use_scaler and c.amp_dtype is torch.float16
    assert "7.0" in c.why
    monkeypatch.setattr(hw, "cuda_capability", lambda device=None: (8, 0))
    c = choose_precision_layout("auto", "on", model, CUDA, (8, 32, 32))
    assert c.precision == "bf16" and not c.use_scaler


def test_cache_hit_and_what_the_key_holds(model, cpu_flags, fake_measure, tmp_path,
                                          monkeypatch):
    cpu_flags(AMX, "Xeon A")
    calls = fake_measure(FIGS)
    cache = tmp_path / "autotune.json"

    def choose(m=model, shape=(8, 32, 32)):
        return choose_precision_layout("auto", "auto", m, CPU, shape, cache)

    first = choose()
    again = choose()
    assert len(calls) == 1 and again.cached and not first.cached
    assert (again.precision, again.channels_last) == (first.precision, first.channels_last)
    assert again.measured == FIGS and "cached" in again.why
    stored = json.loads(cache.read_text())
    key = json.loads(next(iter(stored)))
    assert key["size"] == [32, 32] and key["batch"] == 8 and key["model"]["block"] == "1x5"
    assert "Xeon A" in key["machine"] and "amx_bf16" in key["machine"]
    assert torch.__version__ in key["machine"]
    # every part of the key triggers a new measurement
    choose(shape=(4, 32, 32))
    choose(shape=(8, 64, 32))
    choose(m=build_model(ModelConfig(block="5x5", width=2, depth=2)))
    assert len(calls) == 4
    cpu_flags(AMX, "Xeon B")
    choose()
    cpu_flags(AMX | {"avx512_vnni"}, "Xeon B")
    choose()
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    choose()
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        choose()
    finally:
        torch.set_num_threads(threads)
    assert len(calls) == 8
    choose()  # threads restored: the key measured just before is cached
    assert len(calls) == 8


def test_damaged_cache_is_remeasured(model, cpu_flags, fake_measure, tmp_path):
    cpu_flags(AMX)
    calls = fake_measure(FIGS)
    cache = tmp_path / "autotune.json"
    cache.write_text("{not json")
    c = choose_precision_layout("auto", "auto", model, CPU, (8, 32, 32), cache)
    assert c.precision == "bf16" and len(calls) == 1
    assert json.loads(cache.read_text())  # rewritten whole


def test_explicit_settings_are_honoured(model, cpu_flags, fake_measure, tmp_path):
    cpu_flags(AMX)
    calls = fake_measure(FIGS)
    c = choose_precision_layout("off", "off", model, CPU, (8, 32, 32), tmp_path / "c.json")
    assert (c.precision, c.channels_last) == ("fp32", False) and "--amp off" in c.why
    c = choose_precision_layout("bf16", "on", model, CPU, (8, 32, 32), tmp_path / "c.json")
    assert (c.precision, c.channels_last) == ("bf16", True)
    assert calls == []
    c = choose_precision_layout("off", "auto", model, CPU, (8, 32, 32), tmp_path / "c.json")
    assert c.precision == "fp32" and calls == [["fp32 channels_last", "fp32 NCHW"]]
    cpu_flags(AVX2)  # asked for bf16 on a CPU that emulates it: honoured, with a warning
    c = choose_precision_layout("bf16", "off", model, CPU, (8, 32, 32), tmp_path / "c.json")
    assert c.precision == "bf16" and "slow" in c.why
    with pytest.raises(UserError, match="fp16 is not supported on CPU"):
        choose_precision_layout("fp16", "off", model, CPU, (8, 32, 32))
    with pytest.raises(UserError, match="choose auto, off, bf16, fp16"):
        choose_precision_layout("half", "off", model, CPU, (8, 32, 32))
    with pytest.raises(UserError, match="choose auto, on, off"):
        choose_precision_layout("off", "yes", model, CPU, (8, 32, 32))


def test_time_candidates_interleaves_within_budget():
    now = [0.0]
    order = []
    cost = {"a": 1.0, "b": 3.0, "c": 2.0}

    def fn(k):
        def run():
            order.append(k)
            now[0] += cost[k]
        return run

    best = tune.time_candidates({k: fn(k) for k in cost}, budget_s=100, rounds=3,
                                clock=lambda: now[0])
    assert best == cost and order == list("abc") * 4  # warm-up, then 3 rounds
    order.clear()
    tune.time_candidates({k: fn(k) for k in cost}, budget_s=7, rounds=3, clock=lambda: now[0])
    assert order == list("abc") * 2  # warm-up + the one round always run, then over budget
    assert tune.fastest({"x": 2.0, "y": 1.0, "z": 1.0}) == "y"


def test_real_measurement_runs_every_candidate_on_copies(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cands = [("fp32", True), ("fp32", False), ("bf16", False)]
    ips, bs = runtime.measure_candidates(model, CPU, (2, 32, 32), cands, budget_s=5.0)
    assert set(ips) == {"fp32 channels_last", "fp32 NCHW", "bf16 NCHW"} and bs in (1, 2)
    assert all(v > 0 for v in ips.values())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the model is untouched
    assert next(model.parameters()).is_contiguous()


def test_large_inputs_are_measured_at_a_smaller_batch(model, monkeypatch):
    # a budget no step fits: the measurement shrinks the batch instead of running for minutes
    ips, bs = runtime.measure_candidates(model, CPU, (8, 32, 32), [("fp32", False),
                                                                   ("fp32", True)],
                                         budget_s=1e-6)
    assert bs == 1 and set(ips) == {"fp32 NCHW", "fp32 channels_last"}


def test_choice_round_trips_to_json():
    c = Choice("bf16", False, "auto: measured", {"bf16 NCHW": 20.4})
    d = c.to_dict()
    assert d["precision"] == "bf16" and d["channels_last"] is False
    assert json.loads(json.dumps(d))["measured_images_per_s"] == {"bf16 NCHW": 20.4}


def test_a_busy_machines_measurement_is_not_cached(model, cpu_flags, fake_measure, tmp_path,
                                                   monkeypatch):
    cpu_flags(AMX)
    calls = fake_measure(FIGS)
    monkeypatch.setattr(hw, "busy", lambda: (True, "load average 9.0 on 2 CPUs"))
    cache = tmp_path / "c.json"
    c = choose_precision_layout("auto", "auto", model, CPU, (8, 32, 32), cache)
    assert c.precision == "bf16" and "busy" in c.why and "9.0" in c.why
    choose_precision_layout("auto", "auto", model, CPU, (8, 32, 32), cache)
    assert len(calls) == 2 and not cache.exists()


def test_loader_thread_only_where_it_can_overlap(monkeypatch):
    """A background loader only where its work does not take the training threads' cores."""
    from lkmseg.data.loader import prefetch_depth

    cpu = torch.device("cpu")
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    depth, why = prefetch_depth(None, cpu)
    assert depth == 0 and "all 2 cores" in why
    assert prefetch_depth(3, cpu) == (3, "--workers 3")  # asked for: honoured
    assert prefetch_depth(0, torch.device("cuda"))[0] == 0
    assert prefetch_depth(None, torch.device("cuda"))[0] == 2  # CPU work overlaps the GPU's
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    depth, why = prefetch_depth(None, cpu)
    assert depth == 2 and "8 core(s)" in why
