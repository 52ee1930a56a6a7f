"""Peak resident memory of one forward pass, measured in a fresh subprocess (Linux).

Measuring in the benchmarking process itself reads about 0: after the warm-up and the timed runs the allocator
keeps the freed pages, so a later forward reuses them and the resident set does not grow. A fresh process that
has only built its model has no such pages, so its high-water mark during the first forward is what the
forward needs on top of the weights.

* :func:`forward_peak_rss` runs in the child: RSS after building the model, then the peak RSS during one forward
  (``VmHWM`` reset through ``/proc/self/clear_refs``, and a thread sampling ``VmRSS`` every 2 ms, whichever
  is higher; the sampler alone where ``clear_refs`` cannot be written).
* :func:`peak_rss_in_subprocess` starts the child (a benchmark script with its own ``--memory-child`` flag)
  and returns the JSON object it prints last.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path


def status_kb(field: str) -> int | None:
    """``field`` of /proc/self/status (e.g. ``"VmRSS"``) in kB; None where it cannot be read."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def forward_peak_rss(run: Callable[[], object], interval_s: float = 0.002) -> dict:
    """Run ``run()`` once and report the resident memory around it, in MB.

    Returns ``rss_before_forward_mb`` (weights, inputs and the runtime), ``peak_rss_mb`` (the highest RSS
    while ``run()`` executed) and ``forward_peak_growth_mb`` (their difference), plus ``method``; the values are
    ``None`` where ``/proc/self/status`` does not exist.
    """
    gc.collect()
    before = status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        method = "VmHWM reset by clear_refs + VmRSS sampling"
    except OSError:
        method = "VmRSS sampling"
    sampled = [before or 0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval_s):
            rss = status_kb("VmRSS")
            if rss is not None:
                sampled.append(rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    if before is None:
        return {
            "rss_before_forward_mb": None,
            "peak_rss_mb": None,
            "forward_peak_growth_mb": None,
            "method": None,
        }
    peak = max(sampled)
    if method.startswith("VmHWM"):
        peak = max(peak, status_kb("VmHWM") or 0)
    return {
        "rss_before_forward_mb": round(before / 1024, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "forward_peak_growth_mb": round((peak - before) / 1024, 1),
        "method": method,
    }


def peak_rss_in_subprocess(script: str | Path, argv: list[str], timeout_s: float = 1800) -> dict:
    """Run ``python script *argv`` in a fresh process and return the JSON object of its last stdout line
    (``{"error": ...}`` if it fails)."""
    done = subprocess.run(
        [sys.executable, str(script), *argv],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=timeout_s,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()
        return {"error": tail[-1] if tail else f"exit code {done.returncode}"}
    return json.loads(lines[-1])


def peak_rss_per_model(script: str | Path, argv: list[str] | None, models) -> dict[str, dict]:
    """``{model: peak_rss_in_subprocess(...)}``: ``script`` rerun once per model with ``--memory-child MODEL``
    (``argv`` defaults to this process's arguments; ``--skip-memory`` is dropped)."""
    child_argv = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--skip-memory"]
    return {name: peak_rss_in_subprocess(script, [*child_argv, "--memory-child", name]) for name in models}
