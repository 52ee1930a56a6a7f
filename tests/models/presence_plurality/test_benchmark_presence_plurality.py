"""benchmarks/presence_plurality_vs_mask2former.py starts and reports its JSON fields (tiny preset)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "presence_plurality_vs_mask2former.py"


@pytest.mark.slow
def test_benchmark_runs_on_the_tiny_preset():
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--preset",
            "tiny",
            "--image-size",
            "64",
            "--repeats",
            "1",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["benchmark"] == "presence_plurality_vs_mask2former" and report["image_size"] == 64
    ours = report["presence_plurality"]
    assert ours["parameters"] > ours["swin_parameters"] > 0 and ours["fusion_parameters"] > 0
    assert {"language_aware_backbone", "pixel_decoder", "target_query", "mask_head"} <= set(
        ours["components_ms_median"]
    )
    assert report["mask2former"]["latency_ms_median"] > 0
    for name in ("presence_plurality", "mask2former"):  # measured in a fresh subprocess per model
        memory = report[name]["memory"]
        assert memory["model"] == name and "error" not in memory
        assert memory["peak_rss_mb"] >= memory["rss_before_forward_mb"] > 0
        assert memory["forward_peak_growth_mb"] == pytest.approx(
            memory["peak_rss_mb"] - memory["rss_before_forward_mb"], abs=0.11
        )
    assert isinstance(report["meets_target"], bool)
