"""Run risky code in a child Python whose address space is capped, so a memory bomb never reaches the host."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass

_PRELUDE = """
import importlib.util, resource, sys, types
root = types.ModuleType("refseg")  # refseg.data without refseg/__init__ (which imports torch): a fast child
root.__path__ = list(importlib.util.find_spec("refseg").submodule_search_locations)
sys.modules["refseg"] = root
import refseg.data.safe_pickle, refseg.data.masks, refseg.data.coco  # imported before the cap
{preload}
vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + {extra} * 2**20, resource.RLIM_INFINITY))
try:
{body}
    print("OK")
except BaseException as err:
    print(type(err).__name__ + ": " + str(err)[:300])
"""


@dataclass
class Bounded:
    """What the child printed (``OK`` or ``<Exception>: <message>``) and how long it ran."""

    stdout: str
    seconds: float


def run_bounded(code: str, extra_mb: int = 256, timeout: float = 60.0, preload: str = "") -> Bounded:
    """Run ``code`` in a child whose address space may grow by ``extra_mb`` MiB at most (Linux); ``preload``
    (e.g. heavy imports) runs before the cap is set."""
    if not sys.platform.startswith("linux"):
        import pytest

        pytest.skip("RLIMIT_AS and /proc are Linux-only")
    script = _PRELUDE.format(preload=preload, extra=extra_mb, body=textwrap.indent(code, "    "))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return Bounded(stdout=proc.stdout.strip() + proc.stderr[-500:], seconds=time.perf_counter() - start)
