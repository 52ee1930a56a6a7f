"""The presence & plurality paper's equations (Kim et al., AAAI 2026) as wired inside the full model, each
recomputed independently on the tiny preset.

The component tests check blocks on hand-made inputs; these check how the task model connects them: the
language-aware Swin (LAVT eq. 1-3 and gate, Sec. 3.1), the mask head on the pixel decoder (Sec. 3.1), the
target query reading the sentence (eq. 3) then the stride-32 slices of the pixel decoder's states with their
position/level embeddings (eq. 4), the plurality head on ``e_0`` and the presence head on ``e_L``, the loss of
eq. 5 with its labels, class weights and lambdas, the presence-gated inference (Sec. 3.4), and the processor's
statistics, letterbox and thresholds (Sec. 4.2, Sec. 3.4).
"""

import pytest
import torch
import torch.nn.functional as F

from refseg.models.presence_plurality import (
    PresencePluralityConfig,
    PresencePluralityForReferringSegmentation,
    PresencePluralityImageProcessor,
)
from tests.language_fusion_reference import (
    capture_language_fusion,
    check_language_fusion,
    open_language_gates,
)
from tests.paper_wiring_helpers import assert_imagenet_normalisation, constant_image, logit

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models run fastest on one thread

SIZE, LENGTH = 64, 7
LAMBDAS = dict(lambda_pixel=1.3, lambda_presence=0.4, lambda_plurality=0.25)  # distinct: a swap shows
TOL = dict(rtol=1e-4, atol=1e-5)


def _model(**overrides) -> PresencePluralityForReferringSegmentation:
    torch.manual_seed(0)
    model = PresencePluralityForReferringSegmentation(
        PresencePluralityConfig.preset("tiny", **overrides)
    ).eval()
    open_language_gates(model.model.backbone)
    return model


def _inputs(batch: int = 3):
    generator = torch.Generator().manual_seed(1)
    pixel_values = torch.randn(batch, 3, SIZE, SIZE, generator=generator)
    input_ids = torch.randint(3, 100, (batch, LENGTH), generator=generator)
    attention_mask = torch.ones(batch, LENGTH, dtype=torch.long)
    attention_mask[-1, LENGTH - 3 :] = 0
    pixel_mask = torch.ones(batch, SIZE, SIZE, dtype=torch.long)
    pixel_mask[-1, :, 32:] = 0  # a letterboxed last image: its right stride-32 column is padding
    return dict(
        pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask, pixel_mask=pixel_mask
    )


def _labels():
    """Sample 0: two instances (plural); sample 1: one (singular); sample 2: no target."""
    two = torch.zeros(2, SIZE, SIZE)
    two[0, :20, :24] = 1
    two[1, 40:, 36:] = 1
    one = torch.zeros(1, SIZE, SIZE)
    one[0, 8:40, 16:48] = 1
    return [two, one, torch.zeros(0, SIZE, SIZE)]


def _cross_attention(block, query, memory, position, padding):
    """``CrossAttn`` of eq. 3-4 for one sample: MHA (keys = memory + position, values = memory), residual, LN,
    ReLU FFN, residual, LN (Mask2Former's post-norm layer)."""
    mha, dim = block.attention, query.shape[-1]
    heads = mha.num_heads
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
    keys = memory if position is None else memory + position
    q = (query @ w_q.T + b_q).view(len(query), heads, -1).transpose(0, 1)
    k = (keys @ w_k.T + b_k).view(len(keys), heads, -1).transpose(0, 1)
    v = (memory @ w_v.T + b_v).view(len(memory), heads, -1).transpose(0, 1)
    scores = q @ k.transpose(1, 2) / (dim // heads) ** 0.5
    if padding is not None and not bool(padding.all()):
        scores = scores.masked_fill(padding[None, None, :], float("-inf"))
    attended = (scores.softmax(-1) @ v).transpose(0, 1).reshape(len(query), dim)
    norm1, norm2 = block.attention_norm, block.ffn_norm
    x = F.layer_norm(
        query + attended @ mha.out_proj.weight.T + mha.out_proj.bias, (dim,), norm1.weight, norm1.bias
    )
    ffn = torch.relu(x @ block.fc1.weight.T + block.fc1.bias) @ block.fc2.weight.T + block.fc2.bias
    return F.layer_norm(x + ffn, (dim,), norm2.weight, norm2.bias)


def _mlp(sequential, x):
    """The heads' MLP: linear layers with ReLU in between."""
    linears = [m for m in sequential if isinstance(m, torch.nn.Linear)]
    for i, linear in enumerate(linears):
        x = x @ linear.weight.T + linear.bias
        if i < len(linears) - 1:
            x = torch.relu(x)
    return x


def test_language_aware_swin_fuses_and_gates_stages_1_to_3_lavt_eq1_3():
    """Sec. 3.1 (LAVT eq. 1-3, Sec. 3.3): each stage's ``F_m`` and its gated stream ``V + tanh(...) * F_m``."""
    model = _model()
    inputs = _inputs()
    with torch.no_grad(), capture_language_fusion(model.model.backbone) as records:
        model(**inputs)
        text = model.model.text_encoder(inputs["input_ids"], inputs["attention_mask"])
    assert check_language_fusion(model.model.backbone, records, text, inputs["attention_mask"]) == 3


def test_target_query_reads_the_sentence_then_the_stride_32_decoder_states_eq3_eq4():
    """Eq. 3: ``e_0 = CrossAttn(f^T; e'_0)`` over the valid words; eq. 4: ``e_l = CrossAttn_l(f^{M,4}_{l-1};
    e_{l-1})`` on the stride-32 slice of the pixel decoder's input and layer states, keys with their
    position + level embeddings, padded tokens excluded; plurality from ``e_0``, presence from ``e_L``."""
    model = _model()
    inputs = _inputs()
    with torch.no_grad():
        out = model(**inputs)
        decoded = model.model(**inputs)
    layers = model.config.pixel_decoder_layers
    assert len(decoded.decoder_hidden_states) == layers + 1  # f_0 (the decoder's input) .. f_L
    assert tuple(decoded.decoder_spatial_shapes[0]) == (SIZE // 32, SIZE // 32)  # low resolution first
    start, stop = decoded.decoder_level_start_index[0], (SIZE // 32) ** 2
    query_module = model.target_query
    for b in range(3):
        text = (
            decoded.text_features[b] @ query_module.text_projection.weight.T
            + query_module.text_projection.bias
        )
        words = inputs["attention_mask"][b].bool()
        e = _cross_attention(
            query_module.text_cross_attention, query_module.query_embedding.weight, text, None, ~words
        )  # eq. 3
        states = [e]
        position = decoded.decoder_position_embeddings[b, start : start + stop]
        padding = decoded.decoder_padding_mask[b, start : start + stop]
        for layer, block in enumerate(query_module.visual_cross_attention):  # eq. 4: e_l reads f_{l-1}
            memory = decoded.decoder_hidden_states[layer][b, start : start + stop]
            e = _cross_attention(block, e, memory, position, padding)
            states.append(e)
        torch.testing.assert_close(out.target_query_states[:, b], torch.cat(states), **TOL)
        torch.testing.assert_close(out.plurality_logits[b], _mlp(model.plurality_head, states[0][0]), **TOL)
        torch.testing.assert_close(out.presence_logits[b], _mlp(model.presence_head, states[-1][0]), **TOL)
    assert bool(decoded.decoder_padding_mask[2, start : start + stop].any())  # the letterbox reaches eq. 4


def test_mask_head_and_presence_gated_inference_sec3_1_sec3_4():
    """Sec. 3.1: ``Y_hat`` = MLP on the stride-4 mask features upsampled to the input; the foreground logit is
    the 2-class difference (padding pushed to the background). Sec. 3.4: no target when the presence
    probability (index 1) is below 0.5; ``sigmoid(no_target_logits)`` is P(absent); the final mask is the
    foreground above ``mask_threshold`` of present samples."""
    model = _model(presence_threshold=0.5, mask_threshold=0.5)
    inputs = _inputs()
    with torch.no_grad():
        out = model(**inputs)
        features = model.model(**inputs).mask_features
    upsampled = F.interpolate(features, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    expected = _mlp(model.mask_head, upsampled.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(out.logits, expected, **TOL)
    valid = inputs["pixel_mask"].bool()
    difference = expected[:, 1] - expected[:, 0]
    torch.testing.assert_close(out.semantic_mask_logits[valid], difference[valid], **TOL)
    assert bool((out.semantic_mask_logits[~valid] < -10).all())
    present = out.presence_logits.softmax(-1)[:, 1]
    torch.testing.assert_close(out.no_target_logits.sigmoid(), 1 - present, **TOL)
    assert torch.equal(out.no_target, present < 0.5)
    assert torch.equal(
        out.final_masks, (out.semantic_mask_logits.sigmoid() > 0.5) & ~out.no_target[:, None, None]
    )
    # the decision itself, with a presence head forced to each side of the threshold
    with torch.no_grad():
        last = [m for m in model.presence_head if isinstance(m, torch.nn.Linear)][-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, logit(0.45)]))  # P(present) = 0.45
        absent = model(**inputs)
        last.bias.copy_(torch.tensor([0.0, logit(0.55)]))
        present_out = model(**inputs)
    assert absent.no_target.tolist() == [True] * 3 and present_out.no_target.tolist() == [False] * 3
    torch.testing.assert_close(absent.no_target_logits, torch.full((3,), logit(0.55)), **TOL)


def test_eq5_loss_labels_class_weights_and_lambdas():
    """Eq. 5 by hand: weighted pixel CE (0.9 background, 1.1 foreground) outside the letterbox, presence CE
    (0.9 absent, 1.1 present) with ``y_pr = [n_b > 0]``, plurality CE with ``y_pl = [n_b >= 2]`` on the samples
    that have a target, and ``lambda_pixel, lambda_presence, lambda_plurality`` from the config."""
    model = _model(**LAMBDAS)
    inputs = _inputs()
    labels = _labels()
    with torch.no_grad():
        out = model(**inputs, mask_labels=labels)
    union = torch.stack([m.amax(0) if len(m) else torch.zeros(SIZE, SIZE) for m in labels]).long()
    nll = -out.logits.log_softmax(1).gather(1, union[:, None])[:, 0]
    weights = torch.where(union == 1, 1.1, 0.9) * inputs["pixel_mask"]
    loss_pixel = (weights * nll).sum() / weights.sum()
    torch.testing.assert_close(out.loss_dict["loss_pixel"], loss_pixel, **TOL)

    log_presence = out.presence_logits.log_softmax(-1)
    loss_presence = -(1.1 * log_presence[0, 1] + 1.1 * log_presence[1, 1] + 0.9 * log_presence[2, 0]) / 3.1
    torch.testing.assert_close(out.loss_dict["loss_presence"], loss_presence, **TOL)

    log_plurality = out.plurality_logits.log_softmax(-1)
    loss_plurality = -(log_plurality[0, 1] + log_plurality[1, 0]) / 2  # the no-target sample is left out
    torch.testing.assert_close(out.loss_dict["loss_plurality"], loss_plurality, **TOL)
    torch.testing.assert_close(
        out.loss, 1.3 * loss_pixel + 0.4 * loss_presence + 0.25 * loss_plurality, **TOL
    )


def test_processor_letterboxes_with_imagenet_statistics_sec4_2():
    """Sec. 4.2: 480 x 480 keeping the aspect ratio through padding; the Swin encoder's ImageNet statistics."""
    processor = PresencePluralityImageProcessor()
    square = processor(constant_image(60, 60))
    assert_imagenet_normalisation(square["pixel_values"])
    wide = processor(constant_image(30, 60))
    assert wide["pixel_values"].shape == (1, 3, 480, 480)
    assert int(wide["pixel_mask"].sum()) == 240 * 480 and bool(wide["pixel_mask"][0, :240].all())
    assert_imagenet_normalisation(wide["pixel_values"][:, :, :240])
    assert bool((wide["pixel_values"][:, :, 240:] == 0).all())


def test_post_processing_thresholds_are_exercised_near_their_values():
    """``mask_threshold`` on probabilities 0.55 / 0.65 and the no-target decision on ``sigmoid(no_target_logits)``
    0.45 / 0.55 (Sec. 3.4: both 0.5 by default), on the canvas size (no interpolation)."""
    processor = PresencePluralityImageProcessor(size=8)
    probabilities = torch.full((8, 8), 0.2)
    probabilities[:3, :3] = 0.65
    probabilities[5:, 5:] = 0.55
    outputs = {
        "semantic_mask_logits": torch.logit(probabilities)[None].repeat(2, 1, 1),
        "no_target_logits": torch.tensor([logit(0.45), logit(0.55)]),
    }
    at_half = processor.post_process_referring_segmentation(outputs, mask_threshold=0.5)
    at_060 = processor.post_process_referring_segmentation(outputs, mask_threshold=0.6)
    assert int(at_half[0]["mask"].sum()) == 18 and int(at_060[0]["mask"].sum()) == 9
    assert len(at_half[0]["instances"]) == 2 and len(at_060[0]["instances"]) == 1
    assert [r["no_target"] for r in at_half] == [False, True]
    assert at_half[0]["target_score"] == pytest.approx(0.55, abs=1e-6)
    assert int(at_half[1]["semantic_mask"].sum()) == 18 and not bool(at_half[1]["mask"].any())
