"""benchmarks/timing.py: the latency loop every paper-config benchmark shares."""

import importlib.util
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "timing.py"


def _timing():
    spec = importlib.util.spec_from_file_location("benchmark_timing", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_time_runners_warms_up_alternates_and_summarises():
    timing = _timing()
    calls: list[str] = []
    layers = {name: torch.nn.Identity() for name in ("a", "b")}
    runners = {
        name: (
            lambda name=name: calls.append(name) or layers[name](torch.zeros(1)),
            timing.ComponentTimer({name: layers[name]}),
        )
        for name in ("a", "b")
    }
    lines: list[str] = []
    results = timing.time_runners(runners, repeats=3, warmup=2, alternate=True, progress=lines.append)
    assert calls == ["a", "a", "b", "b", "a", "b", "b", "a", "a", "b"]
    assert len(lines) == 6 and lines[0].startswith("round 1/3 a: ")
    for name in ("a", "b"):
        entry = results[name]
        assert len(entry["latencies_ms"]) == 3 and entry["latency_ms_min"] == min(entry["latencies_ms"])
        assert set(entry["components_ms_median"]) == {name}  # timed runs only, not the warm-up
        assert len(runners[name][1].times[name]) == 3


def test_time_runners_keeps_the_order_by_default():
    timing = _timing()
    calls: list[str] = []
    runners = {name: (lambda name=name: calls.append(name), timing.ComponentTimer({})) for name in ("a", "b")}
    timing.time_runners(runners, repeats=2)
    assert calls == ["a", "b", "a", "b", "a", "b"]


def test_latency_ratios_of_medians_and_minima():
    results = {
        "ours": {"latency_ms_median": 30.0, "latency_ms_min": 20.0},
        "base": {"latency_ms_median": 40.0, "latency_ms_min": 30.0},
    }
    assert _timing().latency_ratios(results, "ours", "base") == {
        "latency_ratio_ours_over_base": 0.75,
        "latency_ratio_of_minima": 0.667,
    }
