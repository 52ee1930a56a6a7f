"""benchmarks/instancevg_vs_original.py in refseg-only mode (no original checkout), on the tiny preset."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "instancevg_vs_original.py"


def _load_benchmark():
    if str(SCRIPT.parent) not in sys.path:  # the script imports its sibling peak_memory.py, as when it is run
        sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("instancevg_vs_original", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inputs_are_bos_tokens_eos_then_padding():
    bench = _load_benchmark()
    pixel_values, ids, padding = bench.make_inputs(8, max_length=6, valid_tokens=4, vocab_size=50)
    assert pixel_values.shape == (1, 3, 8, 8)
    assert ids[0, 0] == 0 and ids[0, 3] == 2 and ids[0, 4:].tolist() == [1, 1]
    assert bool((ids[0, 1:3] >= 4).all()) and padding.tolist() == [[0, 0, 0, 0, 1, 1]]
    with pytest.raises(ValueError, match="at least 2"):
        bench.make_inputs(8, max_length=6, valid_tokens=1, vocab_size=50)


@pytest.mark.slow  # builds and runs the model a few times (tens of seconds on a loaded 2-core machine)
def test_refseg_only_report_on_tiny_preset(capsys):
    from refseg.models.instancevg import InstanceVGConfig, InstanceVGForReferringSegmentation

    bench = _load_benchmark()
    threads = torch.get_num_threads()
    report = bench.main(
        ["--preset", "tiny", "--warmup", "0", "--repeats", "2", "--no-memory", "--threads", str(threads)]
    )
    expected = sum(
        p.numel() for p in InstanceVGForReferringSegmentation(InstanceVGConfig.preset("tiny")).parameters()
    )
    assert report["refseg"]["parameters"] == expected
    assert len(report["refseg"]["latencies_ms"]) == 2 and report["refseg"]["latency_ms_median"] > 0
    assert set(report["refseg"]["components_ms_median"]) == {
        "encoder",
        "simple_fpn",
        "unet_decoder",
        "query_generator",
        "decoder",
    }
    assert "original" not in report and "latency_ratio_refseg_over_original" not in report
    assert (report["image_size"], report["text_length"], report["valid_tokens"]) == (64, 12, 12)
    assert '"benchmark": "instancevg_vs_original"' in capsys.readouterr().out
