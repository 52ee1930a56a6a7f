"""Per-component wall-clock timing shared by the paper-config benchmarks."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

import torch

__all__ = ["ComponentTimer"]


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
