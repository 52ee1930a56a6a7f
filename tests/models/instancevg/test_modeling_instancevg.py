"""InstanceVGForReferringSegmentation: outputs, wiring, input validation, losses, save / load, Auto classes."""

import math

import pytest
import torch

import refseg  # noqa: F401
from refseg.models.instancevg import InstanceVGConfig, InstanceVGForReferringSegmentation
from refseg.models.instancevg.heads import inverse_sigmoid
from refseg.models.instancevg.modeling_instancevg import InstanceVGOutput, boxes_from_masks

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models run fastest on one thread


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return InstanceVGForReferringSegmentation(InstanceVGConfig.preset("tiny")).eval()


def make_inputs(batch=2, length=9):
    generator = torch.Generator().manual_seed(1)
    pixel_values = torch.randn(batch, 3, 64, 64, generator=generator)
    input_ids = torch.randint(4, 1000, (batch, length), generator=generator)
    input_ids[:, 0] = 0
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[-1, 4:] = 0
    input_ids[-1, 4:] = 1
    return pixel_values, input_ids, attention_mask


def test_output_shapes_and_contract_fields(model):
    pixel_values, input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        out = model(pixel_values, input_ids, attention_mask)
    assert isinstance(out, InstanceVGOutput) and out.loss is None
    q = model.config.num_queries
    assert out.pred_masks.shape == (2, q, 64, 64)
    assert out.pred_boxes.shape == (2, q, 4) and ((out.pred_boxes > 0) & (out.pred_boxes < 1)).all()
    assert out.semantic_mask_logits.shape == (2, 64, 64)
    assert out.minimap.shape == (2, 8, 8) and out.attention_maps.shape == (2, q, 8, 8)
    torch.testing.assert_close(out.pred_scores.sigmoid(), out.pred_class_logits.softmax(-1)[..., 0])
    torch.testing.assert_close(out.no_target_logits, -out.no_target_class_logits[:, 0])
    assert len(out.aux_outputs) == model.config.decoder_layers - 1
    # the box head adds the reference point to the centre: reference = sigmoid(Linear(pos)) + prior point
    assert ((out.reference_points - out.prior_points) > 0).all() and (out.reference_points < 2).all()


def test_heads_are_wired_to_the_last_decoder_layer(model):
    pixel_values, input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        base = model.model(pixel_values, input_ids, attention_mask)
        out = model(pixel_values, input_ids, attention_mask)
        last = base.decoder_states[-1]
        torch.testing.assert_close(out.pred_class_logits, model.class_head(last))
        delta = super(type(model.box_head), model.box_head).forward(last)
        offset = torch.cat(
            [inverse_sigmoid(base.reference_points), torch.zeros_like(base.reference_points)], -1
        )
        torch.testing.assert_close(out.pred_boxes, (delta + offset).sigmoid())
        masks = torch.einsum("bqc,bchw->bqhw", last, base.global_features)
        torch.testing.assert_close(
            out.pred_masks[:, :, ::63, ::63], masks[:, :, ::31, ::31]
        )  # corners aligned
        torch.testing.assert_close(
            out.aux_outputs[0]["pred_class_logits"], model.class_head(base.decoder_states[0])
        )


def test_valid_outputs_do_not_depend_on_padding_length(model):
    pixel_values, input_ids, attention_mask = make_inputs()
    longer_ids = torch.cat([input_ids, torch.ones(2, 5, dtype=torch.long)], 1)
    longer_mask = torch.cat([attention_mask, torch.zeros(2, 5, dtype=torch.long)], 1)
    with torch.no_grad():
        short = model(pixel_values, input_ids, attention_mask)
        long = model(pixel_values, longer_ids, longer_mask)
    assert torch.equal(short.prior_points, long.prior_points)
    torch.testing.assert_close(short.pred_boxes, long.pred_boxes, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(short.pred_masks, long.pred_masks, atol=1e-4, rtol=1e-4)


def test_input_validation(model):
    pixel_values, input_ids, attention_mask = make_inputs()
    with pytest.raises(TypeError, match="unexpected keyword argument\\(s\\) 'labels'"):
        model(pixel_values, input_ids, attention_mask, labels=None)
    with pytest.raises(ValueError, match="64x64"):
        model(torch.randn(2, 3, 96, 96), input_ids, attention_mask)
    left = attention_mask.flip(-1)
    with pytest.raises(ValueError, match="pad on the right"):
        model(pixel_values, input_ids, left)
    with pytest.raises(ValueError, match="mask_labels"):
        model(pixel_values, input_ids, attention_mask, mask_labels=[torch.zeros(1, 64, 64)])
    with pytest.raises(ValueError, match="box_labels"):
        model(
            pixel_values,
            input_ids,
            attention_mask,
            mask_labels=[torch.zeros(1, 64, 64)] * 2,
            box_labels=[torch.zeros(2, 4)] * 2,
        )


def test_boxes_from_masks():
    masks = torch.zeros(1, 4, 8)
    masks[0, 1:3, 2:6] = 1
    torch.testing.assert_close(boxes_from_masks(masks), torch.tensor([[0.5, 0.5, 0.5, 0.5]]))


def test_training_loss_backward_and_all_no_target_batch():
    torch.manual_seed(0)
    model = InstanceVGForReferringSegmentation(InstanceVGConfig.preset("tiny")).train()
    pixel_values, input_ids, attention_mask = make_inputs()
    masks = torch.zeros(2, 64, 64)
    masks[0, :20, :20] = 1
    masks[1, 30:, 30:] = 1
    out = model(pixel_values, input_ids, attention_mask, mask_labels=[masks, torch.zeros(0, 64, 64)])
    assert math.isfinite(out.loss.item())
    assert {"loss_det", "loss_mask", "loss_no_target", "loss_minimap"} <= set(out.loss_dict)
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["model.encoder.patch_embedding.weight"] is not None
    assert grads["model.decoder.query_pos_embedding.weight"].abs().sum() > 0
    model.zero_grad()
    empty = model(pixel_values, input_ids, attention_mask, mask_labels=[torch.zeros(0, 64, 64)] * 2)
    assert math.isfinite(empty.loss.item())
    empty.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_box_labels_override_mask_boxes():
    torch.manual_seed(0)
    model = InstanceVGForReferringSegmentation(InstanceVGConfig.preset("tiny")).eval()
    pixel_values, input_ids, attention_mask = make_inputs()
    masks = torch.zeros(1, 64, 64)
    masks[0, :32, :32] = 1
    labels = [masks, torch.zeros(0, 64, 64)]
    derived = model(pixel_values, input_ids, attention_mask, mask_labels=labels)
    explicit = model(
        pixel_values,
        input_ids,
        attention_mask,
        mask_labels=labels,
        box_labels=[torch.tensor([[0.25, 0.25, 0.5, 0.5]]), torch.zeros(0, 4)],
    )
    torch.testing.assert_close(derived.loss, explicit.loss)
    shifted = model(
        pixel_values,
        input_ids,
        attention_mask,
        mask_labels=labels,
        box_labels=[torch.tensor([[0.6, 0.6, 0.5, 0.5]]), torch.zeros(0, 4)],
    )
    assert not torch.allclose(derived.loss_dict["loss_bbox"], shifted.loss_dict["loss_bbox"])
