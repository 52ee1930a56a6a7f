"""``instance_nms_threshold`` in every model's post-processing and in the pipeline (issue 24).

InstAlign suppresses duplicate instances by default (0.5); METRIS, presence & plurality and InstanceVG keep
their instance lists unless asked (``docs/models/<model>.md``). The union / semantic masks never change.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from transformers.utils import ModelOutput

from refseg.models.instalign import InstAlignImageProcessor, InstAlignProcessor
from refseg.models.instancevg.image_processing_instancevg import InstanceVGImageProcessor
from refseg.models.metris.image_processing_metris import MetrisImageProcessor
from refseg.models.presence_plurality.image_processing_presence_plurality import (
    PresencePluralityImageProcessor,
)
from tests.processing_helpers import fake_outputs, tiny_tokenizer

S = 16


def square(x0: int, y0: int, side: int = 6) -> torch.Tensor:
    logits = torch.full((S, S), -10.0)
    logits[y0 : y0 + side, x0 : x0 + side] = 10.0
    return logits


def duplicate_outputs() -> ModelOutput:
    """Three queries: two near-identical squares a pixel apart (IoU 30 / 42) and a disjoint one."""
    masks = torch.stack([square(0, 0), square(1, 0), square(9, 9)])[None]
    scores = torch.tensor([[3.0, 2.0, 1.0]])  # all kept at threshold 0.5
    semantic = torch.maximum(masks[0].amax(0), torch.full((S, S), -10.0))[None]
    return fake_outputs(masks, scores, semantic, torch.tensor([-5.0]))


@pytest.fixture
def instalign():
    return InstAlignImageProcessor(size={"height": S, "width": S})


def test_instalign_drops_the_near_duplicate_by_default(instalign):
    outputs = duplicate_outputs()
    default = instalign.post_process_referring_segmentation(outputs)[0]
    off = instalign.post_process_referring_segmentation(outputs, instance_nms_threshold=None)[0]
    assert len(off["instances"]) == 3
    assert [round(i["score"], 4) for i in default["instances"]] == [
        round(torch.tensor(3.0).sigmoid().item(), 4)
    ] + [round(torch.tensor(1.0).sigmoid().item(), 4)]
    assert default["instances"][0]["box"].tolist() == [0.0, 0.0, 6.0, 6.0]
    assert torch.equal(default["mask"], off["mask"]) and torch.equal(
        default["semantic_mask"], off["semantic_mask"]
    )
    assert default["no_target"] is off["no_target"] is False


@pytest.mark.parametrize("threshold,count", [(1.0, 3), (0.8, 3), (0.72, 3), (0.71, 2), (0.5, 2), (0.0, 2)])
def test_instalign_threshold_is_compared_with_the_mask_iou(instalign, threshold, count):
    # IoU of the two squares: 6x5 = 30 shared pixels over 42 -> 0.714
    result = instalign.post_process_referring_segmentation(
        duplicate_outputs(), instance_nms_threshold=threshold
    )
    assert len(result[0]["instances"]) == count


def test_instalign_processor_passes_the_argument_through(instalign):
    processor = InstAlignProcessor(image_processor=instalign, tokenizer=tiny_tokenizer())
    outputs = duplicate_outputs()
    assert len(processor.post_process_referring_segmentation(outputs)[0]["instances"]) == 2
    off = processor.post_process_referring_segmentation(outputs, instance_nms_threshold=None)
    assert len(off[0]["instances"]) == 3


@pytest.mark.parametrize("bad", [float("nan"), 1.5, -0.5])
def test_bad_thresholds_are_refused_by_every_model(instalign, bad):
    with pytest.raises(ValueError, match="instance_nms_threshold"):
        instalign.post_process_referring_segmentation(duplicate_outputs(), instance_nms_threshold=bad)
    one_mask = ModelOutput(semantic_mask_logits=square(0, 0)[None], no_target_logits=torch.tensor([-5.0]))
    for processor in (
        MetrisImageProcessor(size={"height": S, "width": S}),
        PresencePluralityImageProcessor(),
    ):
        with pytest.raises(ValueError, match="instance_nms_threshold"):
            processor.post_process_referring_segmentation(one_mask, instance_nms_threshold=bad)


def test_connected_component_models_accept_the_argument_and_keep_their_components():
    semantic = torch.maximum(square(0, 0), square(9, 9))[None]
    one_mask = ModelOutput(semantic_mask_logits=semantic, no_target_logits=torch.tensor([-5.0]))
    for processor in (
        MetrisImageProcessor(size={"height": S, "width": S}),
        PresencePluralityImageProcessor(size={"height": S, "width": S}),
    ):
        base = processor.post_process_referring_segmentation(one_mask)[0]["instances"]
        for threshold in (None, 0.5, 0.0):
            found = processor.post_process_referring_segmentation(one_mask, instance_nms_threshold=threshold)
            assert [i["box"].tolist() for i in found[0]["instances"]] == [i["box"].tolist() for i in base]
        assert len(base) == 2


def test_instancevg_keeps_duplicates_by_default_and_drops_them_when_asked():
    masks = torch.stack([square(0, 0), square(1, 0), square(9, 9)])[None]
    class_logits = torch.tensor([[[4.0, -4.0], [3.0, -3.0], [2.0, -2.0]]])  # p_obj 0.9997, 0.9975, 0.982
    outputs = ModelOutput(
        pred_masks=masks,
        semantic_mask_logits=masks[0].amax(0)[None],
        pred_class_logits=class_logits,
        no_target_class_logits=torch.tensor([[6.0, -6.0]]),
    )
    processor = InstanceVGImageProcessor(size=S, resample_backend="torch")
    default = processor.post_process_referring_segmentation(outputs)[0]
    nms = processor.post_process_referring_segmentation(outputs, instance_nms_threshold=0.5)[0]
    assert len(default["instances"]) == 3 and len(nms["instances"]) == 2
    assert torch.equal(default["mask"], nms["mask"]) and torch.equal(default["scores"], nms["scores"])


def test_pipeline_forwards_the_threshold_only_when_given(monkeypatch):
    from transformers import pipeline

    import refseg

    segmenter = pipeline("referring-segmentation", model=str(refseg.demo_model_path()))
    assert "instance_nms_threshold" not in segmenter._sanitize_parameters()[2]
    assert segmenter._sanitize_parameters(instance_nms_threshold=None)[2] == {"instance_nms_threshold": None}
    assert segmenter._sanitize_parameters(instance_nms_threshold=0.3)[2] == {"instance_nms_threshold": 0.3}
    with pytest.raises(ValueError, match="instance_nms_threshold"):
        segmenter._sanitize_parameters(instance_nms_threshold=2.0)
    seen = []
    post = segmenter.processor.post_process_referring_segmentation

    def spy(*args, **kwargs):
        seen.append(kwargs.get("instance_nms_threshold", "default"))
        return post(*args, **kwargs)

    monkeypatch.setattr(segmenter.processor, "post_process_referring_segmentation", spy)
    image = Path(refseg.demo_model_path()) / "example_scene.png"
    segmenter(str(image), "the red circle")
    segmenter(str(image), "the red circle", instance_nms_threshold=None)
    assert seen == ["default", None]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak RSS from /proc (Linux)")
def test_nms_at_a_2000_pixel_target_stays_far_below_a_copy_of_the_masks():
    """16 identical kept queries at 2000 x 2000, NMS on (the default): one instance, and the peak stays below
    10 float masks (160 MB), as without NMS (tests/models/instalign/test_processing_instalign.py)."""
    side = 2000
    outputs = fake_outputs(
        torch.full((1, 16, 8, 8), 5.0), torch.full((1, 16), 5.0), torch.full((1, 8, 8), 5.0), [-5.0]
    )
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set size to the current one
    before = _rss_kib("VmRSS")
    result = InstAlignImageProcessor(size=32).post_process_referring_segmentation(
        outputs, target_sizes=[(side, side)], threshold=0.0, mask_threshold=0.0
    )[0]
    peak_mib = (_rss_kib("VmHWM") - before) / 1024
    assert len(result["instances"]) == 1 and result["instances"][0]["mask"].all()
    assert peak_mib < 10 * side * side * 4 / 2**20, f"post-processing peaked at {peak_mib:.0f} MiB"


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
