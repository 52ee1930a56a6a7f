"""InstanceVG paper wiring: each test fails when one detail of Sec. 3.2-3.5 is wired wrongly
(``scripts/dev/inject_regressions.py --model instancevg``). Post-processing is exercised with logits next to its
thresholds, so a threshold that is ignored, or compared the wrong way, changes the result."""

import math

import pytest
import torch
from transformers.utils import ModelOutput

from refseg.models.instancevg import InstanceVGImageProcessor

SIZE = 4


def _logit(probability: float) -> float:
    return math.log(probability / (1 - probability))


def _outputs(instance_logits: torch.Tensor, global_logits: torch.Tensor, class_logits=None) -> ModelOutput:
    """Two queries; query 0 is kept (``p_obj * p_target`` about 0.94), query 1 is not (about 0.02)."""
    if class_logits is None:
        class_logits = torch.tensor([[[4.0, -1.0], [-4.0, 0.0]]])
    nt = torch.tensor([[4.0, 0.0]])  # p_target = sigmoid(4) = 0.982
    return ModelOutput(
        pred_masks=instance_logits,
        pred_boxes=torch.tensor([[[0.5, 0.5, 1.0, 1.0], [0.5, 0.5, 1.0, 1.0]]]),
        semantic_mask_logits=global_logits,
        pred_class_logits=class_logits,
        no_target_class_logits=nt,
    )


def _near_threshold() -> tuple[torch.Tensor, torch.Tensor]:
    """Instance and global logits at probabilities 0.55 / 0.65 / 0.45 / exactly 0.5 around ``thr_m``."""
    instance = torch.full((1, 2, SIZE, SIZE), -8.0)
    instance[0, 0, 0, :2] = _logit(0.55)
    instance[0, 0, 1, :2] = _logit(0.65)
    instance[0, 0, 2, :2] = _logit(0.45)
    instance[0, 0, 3, 0] = 0.0  # sigmoid(0) = 0.5 exactly
    instance[0, 1] = 8.0  # the dropped query covers everything: it must never reach the mask
    semantic = torch.full((1, SIZE, SIZE), -8.0)
    semantic[0, 0, 3] = _logit(0.55)
    semantic[0, 1, 3] = _logit(0.65)
    semantic[0, 3, 3] = 0.0
    return instance, semantic


def test_instance_masks_follow_mask_threshold_sec_3_5():
    """``thr_m`` binarises the kept queries' masks: at 0.6 the 0.55 row goes, the 0.65 row stays."""
    processor = InstanceVGImageProcessor(size=SIZE)
    outputs = _outputs(*_near_threshold())
    default = processor.post_process_referring_segmentation(outputs, mask_merge="instance")[0]
    expected = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    expected[0:2, :2] = True
    expected[3, 0] = True  # probability 0.5 >= thr_m = 0.5
    assert torch.equal(default["mask"], expected)
    assert len(default["instances"]) == 1 and torch.equal(default["instances"][0]["mask"], expected)
    stricter = processor.post_process_referring_segmentation(
        outputs, mask_merge="instance", mask_threshold=0.6
    )[0]
    expected = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    expected[1, :2] = True
    assert torch.equal(stricter["mask"], expected)
    assert torch.equal(stricter["instances"][0]["mask"], expected)
    looser = processor.post_process_referring_segmentation(
        outputs, mask_merge="instance", mask_threshold=0.4
    )[0]
    assert int(looser["mask"].sum()) == 7
    # the processor's own default is used when the call gives none
    configured = InstanceVGImageProcessor(size=SIZE, mask_threshold=0.6)
    assert torch.equal(
        configured.post_process_referring_segmentation(outputs, mask_merge="instance")[0]["mask"], expected
    )


def test_global_mask_follows_mask_threshold_and_is_or_merged_sec_3_5():
    processor = InstanceVGImageProcessor(size=SIZE)
    outputs = _outputs(*_near_threshold())
    only_global = processor.post_process_referring_segmentation(
        outputs, mask_merge="global", mask_threshold=0.6
    )[0]
    expected = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    expected[1, 3] = True
    assert torch.equal(only_global["mask"], expected)
    merged = processor.post_process_referring_segmentation(outputs, mask_threshold=0.6)[0]
    expected[1, :2] = True  # the kept query's 0.65 row
    assert torch.equal(merged["mask"], expected) and torch.equal(merged["semantic_mask"], expected)
    at_half = processor.post_process_referring_segmentation(outputs, mask_merge="global")[0]
    assert at_half["mask"][:, 3].tolist() == [True, True, False, True]  # 0.55, 0.65, p = 0, exactly 0.5


def test_query_score_is_the_object_probability_times_the_target_probability_sec_3_5():
    """Index 0 of the class logits is 'object'; the score is ``softmax(c)[0] * sigmoid(nt[0])``."""
    processor = InstanceVGImageProcessor(size=SIZE)
    class_logits = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    result = processor.post_process_referring_segmentation(
        _outputs(*_near_threshold(), class_logits=class_logits), threshold=0.5
    )[0]
    p_target = 1 / (1 + math.exp(-4.0))
    p_object = 1 / (1 + math.exp(-1.0))
    torch.testing.assert_close(result["scores"], torch.tensor([p_object, 1 - p_object]) * p_target)
    assert [inst["score"] for inst in result["instances"]] == [pytest.approx(p_object * p_target)]
