"""ONNX export: onnxruntime gives PyTorch's outputs; torch.export keeps the compiled op; the CLI checks it."""

from __future__ import annotations

import pytest
import torch

import refseg
from refseg.export import (
    ReferringSegmentationExportWrapper,
    compare_with_onnxruntime,
    example_inputs,
    export_onnx,
    load_for_export,
    torch_export,
)
from refseg_cli import main
from tests.processing_helpers import save_tiny_instalign

pytestmark = pytest.mark.slow


def _require_onnx():
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name, reason=f"{name} is not installed (pip install 'refseg[onnx]')")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return str(save_tiny_instalign(tmp_path_factory.mktemp("tiny_export")))


def _scene_inputs(processor, batch, seed):
    """Synthetic scenes and their sentences through the model's processor (what the model sees in use),
    padded to the tokenizer's maximum length so that every batch has the same shapes."""
    from refseg.data import synthetic_scenes

    size = processor.image_processor.size["height"]
    rows = synthetic_scenes(num_images=batch, seed=seed, image_size=size, sentences_per_image=1)
    enc = processor(
        images=[r["image"] for r in rows],
        text=[r["sentence"] for r in rows],
        padding="max_length",
        max_length=processor.tokenizer.model_max_length,
    )
    return enc["pixel_values"], enc["input_ids"], enc["attention_mask"]


def test_demo_model_onnx_matches_pytorch(tmp_path):
    """Static shapes keep this export to about a minute; the CLI test covers the dynamic axes."""
    _require_onnx()
    model, processor = load_for_export(refseg.demo_model_path())
    inputs = _scene_inputs(processor, 2, seed=1)
    path = export_onnx(model, tmp_path / "demo.onnx", inputs=inputs, dynamic=False)
    import onnx

    graph = onnx.load(str(path)).graph
    names = [
        "semantic_mask_logits",
        "no_target_logits",
        "pred_masks",
        "pred_scores",
    ]  # InstAlign's contract fields
    assert [o.name for o in graph.output] == names
    assert any(node.op_type == "GridSample" for node in graph.node)  # deformable attention via its reference
    for seed in (1, 2, 3):  # the tracing scenes and two others
        inputs = _scene_inputs(processor, 2, seed)
        diffs = compare_with_onnxruntime(model, path, inputs, threads=2)
        with torch.no_grad():
            scale = {
                n: float(t.abs().max())
                for n, t in zip(names, ReferringSegmentationExportWrapper(model, names)(*inputs))
            }
        for name in ("pred_scores", "semantic_mask_logits", "no_target_logits"):
            assert diffs[name] < 1e-4, diffs
        # instance mask logits reach ~50: float32 summation order alone moves them by ~1e-4 (2e-6 relative)
        assert diffs["pred_masks"] < max(1e-4, 1e-5 * scale["pred_masks"]), (diffs, scale)


def test_torch_export_keeps_the_compiled_op_and_matches_eager(tiny_dir):
    from refseg.kernels import implementation

    model, processor = load_for_export(tiny_dir)
    inputs = example_inputs(model, processor)
    program = torch_export(model, inputs, dynamic=False)
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    if implementation("cpu") == "compiled":
        assert any("ms_deform_attn_forward" in t for t in targets)
    other = tuple(t.clone() for t in inputs)
    other[0].normal_(generator=torch.Generator().manual_seed(1))  # new images, same shapes
    with torch.no_grad():
        expected = ReferringSegmentationExportWrapper(model)(*other)
        got = program.module()(*other)
    for e, g in zip(expected, got):
        assert e.shape == g.shape
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_cli_exports_and_checks(tiny_dir, tmp_path, capsys):
    _require_onnx()
    out = tmp_path / "tiny.onnx"
    assert main(["export", "onnx", "--model", tiny_dir, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and f"-> {out}" in printed
    assert "max |onnxruntime - PyTorch| per output: semantic_mask_logits" in printed
    assert "pred_masks" in printed and "pred_boxes" not in printed
    # dynamic axes (the default): two other batch sizes and two other sentence lengths run and agree
    model, processor = load_for_export(tiny_dir)
    for batch in (1, 3):
        for sentence in ("the circle", "all red circles left of the blue square"):
            other = example_inputs(model, processor, batch=batch, sentence=sentence)
            assert other[1].shape[0] == batch
            assert max(compare_with_onnxruntime(model, out, other).values()) < 1e-4, (batch, sentence)
    with pytest.raises(SystemExit, match="--opset must be at least 16"):
        main(["export", "onnx", "--model", tiny_dir, "--output", str(out), "--opset", "13"])


def test_cli_prints_only_its_result(tiny_dir, tmp_path):
    """A successful ``refseg export onnx`` prints its two result lines and nothing on stderr (no exporter logs,
    progress bars or library warnings), in a fresh process as a user runs it."""
    import subprocess
    import sys

    _require_onnx()
    out = tmp_path / "quiet.onnx"
    code = "import sys; from refseg_cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, "export", "onnx", "--model", tiny_dir, "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert (
        len(lines) == 2
        and lines[0].startswith("refseg export onnx: model")
        and "max |onnxruntime" in lines[1]
    )
