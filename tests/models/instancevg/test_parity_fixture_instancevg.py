"""Conversion parity with the ORIGINAL InstanceVG, checked without it.

``tests/fixtures/instancevg/parity_reduced.pt`` was written by ``scripts/parity/instancevg_parity.py --fixture``:
a reduced-size original model (BEiT-3 2 x 64, head width 32, 128x128, 10 queries) with random weights in the
released checkpoint format (float16-representable values, ``module.`` prefix), four inputs, and what the original
code computed from them (features, points, logits, post-processed scores, boxes and merged masks, losses).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from refseg.boxes import box_xyxy_to_cxcywh
from refseg.models.instancevg import InstanceVGImageProcessor
from refseg.models.instancevg.convert_instancevg import convert_checkpoint

FIXTURE = Path(__file__).parents[2] / "fixtures" / "instancevg" / "parity_reduced.pt"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    fixture = torch.load(FIXTURE, map_location="cpu", weights_only=True)
    folder = tmp_path_factory.mktemp("parity")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in fixture["checkpoint_fp16"].items()}
    assert next(iter(state)).startswith("module.")
    torch.save({"state_dict": state, "epoch": 0}, folder / "official.pth")
    model = convert_checkpoint(
        folder / "official.pth", folder / "out", config_overrides=json.loads(fixture["config_overrides"])
    ).eval()
    images = fixture["pixel_values_fp16"].float()
    attention_mask = 1 - fixture["text_padding_mask"]
    with torch.no_grad():
        base = model.model(images, fixture["input_ids"], attention_mask)
        out = model(images, fixture["input_ids"], attention_mask)
    return fixture, model, base, out


def test_converted_features_and_head_outputs_match_the_original(converted):
    fixture, model, base, out = converted
    expected = fixture["expected"]
    close = dict(atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(base.encoder_cls_token, expected["encoder_cls_token"], **close)
    torch.testing.assert_close(base.encoder_image_tokens[:, ::5], expected["encoder_image_tokens"], **close)
    torch.testing.assert_close(base.global_features[:, :, ::4, ::4], expected["global_features"], **close)
    torch.testing.assert_close(out.minimap, expected["minimap"], **close)
    assert torch.equal(out.prior_points, expected["prior_points"])  # the selected points, exactly
    torch.testing.assert_close(torch.stack(base.decoder_states), expected["decoder_states"], **close)
    torch.testing.assert_close(out.pred_class_logits, expected["pred_class_logits"], **close)
    torch.testing.assert_close(out.pred_boxes, expected["pred_boxes"], **close)
    torch.testing.assert_close(out.pred_masks[:, :, ::4, ::4], expected["pred_masks_sub4"], **close)
    torch.testing.assert_close(
        out.semantic_mask_logits[:, ::4, ::4], expected["semantic_mask_logits_sub4"], **close
    )
    torch.testing.assert_close(out.no_target_class_logits, expected["no_target_class_logits"], **close)


def test_post_processed_scores_boxes_and_merged_masks_match(converted):
    fixture, model, _, out = converted
    expected = fixture["expected"]
    processor = InstanceVGImageProcessor(size=model.config.image_size)
    results = processor.post_process_referring_segmentation(out)
    scores = torch.stack([r["scores"] for r in results])
    torch.testing.assert_close(scores, expected["scores"], atol=1e-5, rtol=1e-5)
    assert torch.equal(scores > 0.7, expected["scores"] > 0.7)
    assert 0 < int((scores > 0.7).sum()) < scores.numel()  # the fixture keeps some queries and drops others
    torch.testing.assert_close(
        torch.stack([r["boxes"] for r in results]), expected["boxes"], atol=1e-3, rtol=1e-5
    )
    merged = torch.stack([r["semantic_mask"] for r in results])
    size = model.config.image_size
    reference = torch.from_numpy(
        np.unpackbits(expected["merged_masks_packed"].numpy(), axis=-1)[..., :size]
    ).bool()
    # exact, except where our own logit is within float rounding of the 0.5 decision
    kept = (scores > 0.7)[:, :, None, None]
    ambiguous = (out.semantic_mask_logits.abs() < 1e-4) | ((out.pred_masks.abs() < 1e-4) & kept).any(1)
    assert not ((merged != reference) & ~ambiguous).any()
    assert merged.any() and (~merged).any()


def test_training_losses_match_the_original(converted):
    fixture, model, _, _ = converted
    size = model.config.image_size
    masks = [m.float() for m in fixture["target_masks"]]
    boxes = [box_xyxy_to_cxcywh(b / size) for b in fixture["target_boxes_xyxy"]]
    assert any(len(m) == 0 for m in masks) and any(len(m) > 1 for m in masks)
    with torch.no_grad():
        out = model(
            fixture["pixel_values_fp16"].float(),
            fixture["input_ids"],
            1 - fixture["text_padding_mask"],
            mask_labels=masks,
            box_labels=boxes,
        )
    expected = fixture["expected"]["losses"]
    ours = {
        "loss_mask": out.loss_dict["loss_mask"],
        "loss_det": out.loss_dict["loss_det"],
        "loss_label_nt": out.loss_dict["loss_no_target"],
    }
    for key, value in expected.items():
        assert float(ours[key]) == pytest.approx(value, rel=1e-4), key
    assert float(out.loss) == pytest.approx(sum(expected.values()), rel=1e-4)
