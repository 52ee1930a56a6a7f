"""Wall-clock timing shared by the paper-config benchmarks: per component, and the latency loop."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import torch

__all__ = ["ComponentTimer", "latency_ratios", "time_runners"]


class ComponentTimer:
    """Wall-clock time of named sub-modules through forward pre/post hooks (only while ``enabled``)."""

    def __init__(self, modules: dict[str, torch.nn.Module]) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self._start: dict[str, float] = {}
        self.enabled = False
        for name, module in modules.items():
            module.register_forward_pre_hook(self._pre(name))
            module.register_forward_hook(self._post(name))

    def _pre(self, name: str):
        def hook(module, args):
            if self.enabled:
                self._start[name] = time.perf_counter()

        return hook

    def _post(self, name: str):
        def hook(module, args, output):
            if self.enabled:
                self.times[name].append((time.perf_counter() - self._start[name]) * 1000)

        return hook

    def medians(self) -> dict[str, float]:
        """Median milliseconds per component."""
        return {name: round(statistics.median(values), 1) for name, values in self.times.items()}


def time_runners(
    runners: dict[str, tuple[Callable[[], object], ComponentTimer]],
    repeats: int,
    warmup: int = 1,
    alternate: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict]:
    """Warm each runner up ``warmup`` times, then time ``repeats`` rounds in which every runner runs once.

    ``alternate`` flips the order of the runners every round (so neither always runs first on a warm cache);
    ``progress`` receives one line per timed run. Returns, per runner name, ``latencies_ms`` (each run),
    ``latency_ms_median``, ``latency_ms_min`` (the run least disturbed by other processes) and
    ``components_ms_median`` from its ``ComponentTimer``.
    """
    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name][0]()  # kernel load, allocator
    latencies: dict[str, list[float]] = {name: [] for name in names}
    for index in range(repeats):
        for name in names[::-1] if alternate and index % 2 else names:
            run, timer = runners[name]
            timer.enabled = True
            start = time.perf_counter()
            run()
            latencies[name].append(round((time.perf_counter() - start) * 1000, 1))
            timer.enabled = False
            if progress is not None:
                progress(f"round {index + 1}/{repeats} {name}: {latencies[name][-1]:.0f} ms")
    return {
        name: {
            "latencies_ms": values,
            "latency_ms_median": round(statistics.median(values), 1),
            "latency_ms_min": min(values),
            "components_ms_median": runners[name][1].medians(),
        }
        for name, values in latencies.items()
    }


def latency_ratios(results: dict[str, dict], ours: str, baseline: str) -> dict[str, float]:
    """``ours`` over ``baseline`` from :func:`time_runners` results: the ratio of the medians, and of the minima
    (the fastest runs are the least disturbed by other processes on a shared machine)."""
    return {
        f"latency_ratio_{ours}_over_{baseline}": round(
            results[ours]["latency_ms_median"] / results[baseline]["latency_ms_median"], 3
        ),
        "latency_ratio_of_minima": round(
            results[ours]["latency_ms_min"] / results[baseline]["latency_ms_min"], 3
        ),
    }
