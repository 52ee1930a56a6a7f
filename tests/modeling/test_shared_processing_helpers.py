"""Shared helpers of the models' ``forward`` checks and post-processing (``refseg.modeling``)."""

from __future__ import annotations

import pytest
import torch

from refseg.boxes import masks_to_boxes
from refseg.modeling.input_checks import check_attention_mask, check_mask_labels, check_pixel_values
from refseg.modeling.outputs import ReferringSegmentationOutput
from refseg.modeling.post_processing import (
    as_referring_segmentation_output,
    referring_segmentation_result,
    target_size_list,
    upsample_logits,
)


def test_masks_to_boxes_has_exclusive_ends_and_stays_importable_from_instalign():
    from refseg.models.instalign.processing_instalign import masks_to_boxes as old

    masks = torch.zeros(2, 4, 6, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    assert masks_to_boxes(masks).tolist() == [[2.0, 1.0, 5.0, 3.0], [0.0, 0.0, 0.0, 0.0]]
    assert old is masks_to_boxes


def test_forward_input_checks_name_the_problem():
    assert check_pixel_values(torch.zeros(2, 3, 64, 32)) == (2, 64, 32)
    with pytest.raises(
        ValueError, match=r"pixel_values must be a \(B, 3, H, W\) tensor, got \(2, 1, 64, 64\)"
    ):
        check_pixel_values(torch.zeros(2, 1, 64, 64))
    with pytest.raises(ValueError, match="multiples of 32, got 48x64"):
        check_pixel_values(torch.zeros(1, 3, 48, 64))
    check_attention_mask(None, torch.zeros(2, 5))
    check_attention_mask(torch.ones(2, 5), torch.zeros(2, 5))
    with pytest.raises(
        ValueError, match=r"attention_mask \(2, 4\) must have the shape of input_ids \(2, 5\)"
    ):
        check_attention_mask(torch.ones(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="attention_mask list must have the shape"):
        check_attention_mask([1, 1], torch.zeros(1, 2))
    check_mask_labels([torch.zeros(0, 4, 4), torch.zeros(2, 4, 4)], 2, 4, 4)
    with pytest.raises(ValueError, match="a list of 2 tensors .* got 1"):
        check_mask_labels([torch.zeros(1, 4, 4)], 2, 4, 4)
    with pytest.raises(ValueError, match=r"mask_labels\[1\] must be a \(n, 4, 4\) tensor .* got \(1, 4, 5\)"):
        check_mask_labels([torch.zeros(1, 4, 4), torch.zeros(1, 4, 5)], 2, 4, 4)


def test_post_processing_helpers():
    logits = torch.ones(2, 3, 3)
    converted = as_referring_segmentation_output({"semantic_mask_logits": logits})
    assert type(converted) is ReferringSegmentationOutput and converted.semantic_mask_logits is logits
    assert as_referring_segmentation_output(converted) is converted
    with pytest.raises(
        ValueError, match=r"fields \['masks'\] that ReferringSegmentationOutput does not have"
    ):
        as_referring_segmentation_output({"masks": logits})
    with pytest.raises(TypeError, match="outputs must be the model's output .* got tuple"):
        as_referring_segmentation_output((logits,))
    assert target_size_list(None, 2, (4, 5)) == [(4, 5), (4, 5)]
    assert target_size_list(torch.tensor([[3, 2]]), 1, (4, 5)) == [(3, 2)]
    with pytest.raises(ValueError, match="got 1 target sizes for a batch of 2"):
        target_size_list([(3, 3)], 2, (4, 5))
    with pytest.raises(ValueError, match=r"target size \(0, 3\) of sample 0 must be positive"):
        target_size_list([(0, 3)], 1, (4, 5))
    logits = torch.arange(4.0).reshape(2, 2)
    same = upsample_logits(logits, (2, 2), (2, 2))
    assert torch.equal(same, logits) and same.data_ptr() != logits.data_ptr()
    assert upsample_logits(logits, (4, 4), (8, 6)).shape == (8, 6)


def test_referring_segmentation_result_empties_the_mask_of_a_no_target_sample():
    semantic = torch.tensor([[True, False], [False, True]])
    calls = []

    def instances(mask):
        calls.append(mask)
        return [{"mask": mask}]

    kept = referring_segmentation_result(semantic, 0.25, 0.5, instances)
    assert kept["mask"] is semantic and kept["instances"] == [{"mask": semantic}]
    assert (kept["no_target"], kept["target_score"]) == (False, 0.75)
    rejected = referring_segmentation_result(semantic, 0.75, 0.5, instances)
    assert not rejected["mask"].any() and rejected["instances"] == [] and rejected["no_target"] is True
    assert rejected["semantic_mask"] is semantic and len(calls) == 1
