"""benchmarks/metris_macs.py starts and reports MACs, latency and per-model peak memory (tiny preset); the
peak-memory helper sees a forward's temporary allocation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


def test_forward_peak_rss_sees_a_temporary_allocation():
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc (Linux)")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from peak_memory import forward_peak_rss
    finally:
        sys.path.remove(str(BENCHMARKS))

    def run():  # 256 MB written and freed; large blocks are mapped and unmapped, so each run grows the RSS
        torch.ones(64 * 2**20).sum()

    for _ in range(2):  # also after a first run: the figure must not read ~0 once the process is warm
        memory = forward_peak_rss(run)
        assert memory["forward_peak_growth_mb"] > 200
        assert memory["peak_rss_mb"] - memory["rss_before_forward_mb"] == pytest.approx(
            memory["forward_peak_growth_mb"], abs=0.11
        )
    assert forward_peak_rss(lambda: None)["forward_peak_growth_mb"] < 50


@pytest.mark.slow
def test_metris_benchmark_runs_on_the_tiny_preset():
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(sys.path))
    command = [sys.executable, str(BENCHMARKS / "metris_macs.py"), "--preset", "tiny", "--image-size", "64"]
    command += ["--repeats", "1", "--threads", "1", "--skip-variants"]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["preset"] == "tiny" and report["metris"]["total_gmacs"] > 0
    for name in ("metris", "mask2former"):  # measured in a fresh subprocess per model
        entry = report["latency"][name]
        assert entry["latency_ms_median"] > 0
        memory = entry["memory"]
        assert memory["model"] == name and "error" not in memory
        assert memory["peak_rss_mb"] >= memory["rss_before_forward_mb"] > 0
    assert {"backbone", "decoder", "mask_head"} <= set(report["latency"]["metris"]["components_ms_median"])
