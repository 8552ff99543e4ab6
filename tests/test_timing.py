"""lkmseg.timing: the one interleaved timer."""

from __future__ import annotations

import pytest

from lkmseg.timing import Probe, interleave, percentiles


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _probes(cost: dict[str, float], clock: FakeClock, order: list[str], **kw) -> dict[str, Probe]:
    def fn(k):
        def run():
            order.append(k)
            clock.now += cost[k]
        return run
    return {k: Probe(fn(k), clock=clock, **kw) for k in cost}


def test_round_robin_and_samples():
    clock, order = FakeClock(), []
    probes = _probes({"a": 1.0, "b": 2.0}, clock, order)
    interleave(probes, rounds=3, per_round=2, clock=clock)
    assert order == list("aabb") * 3
    assert probes["a"].times == [1.0] * 6 and probes["b"].median() == 2.0


def test_slow_probe_gets_fewer_samples_never_none():
    clock, order = FakeClock(), []
    probes = _probes({"fast": 0.01, "slow": 5.0}, clock, order)
    interleave(probes, rounds=3, per_round=10, max_seconds=3.0, clock=clock)
    assert len(probes["fast"].times) == 30
    assert len(probes["slow"].times) == 3  # one per round: the first sample sized it


def test_budget_skips_later_rounds():
    clock, order = FakeClock(), []
    probes = _probes({"a": 1.0, "b": 3.0}, clock, order)
    interleave(probes, rounds=5, budget_s=5.0, clock=clock)
    assert order == list("abab")  # round 1 always runs; round 2 starts at 4 s < 5 s


def test_group_and_sync():
    clock, order, synced = FakeClock(), [], []
    probes = _probes({"a": 2.0}, clock, order, group=4, sync=lambda: synced.append(1))
    probes["a"].warm(2)
    interleave(probes, rounds=2, clock=clock)
    assert order == ["a"] * (2 + 8) and probes["a"].times == [2.0, 2.0]  # per-call mean
    assert len(synced) == 1 + 2 * 2  # after warm-up, then before and after each sample
    assert probes["a"].spent == pytest.approx(16.0)


def test_percentiles_in_ms():
    st = percentiles([0.001 * i for i in range(1, 101)])
    assert st["p50"] == pytest.approx(50.5) and st["p99"] == pytest.approx(99.01)
    assert st["n"] == 100 and st["mean"] == pytest.approx(50.5)
