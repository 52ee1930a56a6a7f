"""METRIS's equations as wired inside the full model, each recomputed independently on the tiny preset.

The component tests check each block on hand-made inputs; these check how the task model connects them: the
language-aware Swin (LAVT eq. 1-3 and gate, Sec. 3.1), the enhanced linguistic tokens and the extractor's
input (Sec. 3.2, eq. 1-3), the guidance set and the decoder's skip connections (Sec. 3.3, Table 5), the
contrastive logits (eq. 4), the mask and no-target losses with their class weights (Sec. 3.3, App. A), the
total loss, and the processor (App. A: ImageNet statistics) and post-processing thresholds.
"""

import pytest
import torch
import torch.nn.functional as F

from refseg.models.metris.configuration_metris import MetrisConfig
from refseg.models.metris.image_processing_metris import MetrisImageProcessor
from refseg.models.metris.modeling_metris import MetrisForReferringSegmentation
from tests.language_fusion_reference import (
    capture_language_fusion,
    check_language_fusion,
    open_language_gates,
)
from tests.paper_wiring_helpers import assert_imagenet_normalisation, constant_image, logit

SIZE, LENGTH = 64, 7  # a 2x2 stride-32 grid (N = 4); decoder output 16x16
LAMBDAS = dict(lambda_seg=1.7, lambda_cl=0.6, lambda_nt=0.35)  # distinct, so a swapped weight shows
pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models run fastest on one thread


def _model(**overrides) -> MetrisForReferringSegmentation:
    torch.manual_seed(0)
    model = MetrisForReferringSegmentation(MetrisConfig.preset("tiny", **overrides)).eval()
    open_language_gates(model.model.backbone)
    return model


def _inputs(batch: int = 2):
    generator = torch.Generator().manual_seed(1)
    pixel_values = torch.randn(batch, 3, SIZE, SIZE, generator=generator)
    input_ids = torch.randint(5, 100, (batch, LENGTH), generator=generator)
    input_ids[:, 0] = 2  # [CLS]
    attention_mask = torch.ones(batch, LENGTH, dtype=torch.long)
    attention_mask[-1, LENGTH - 2 :] = 0
    input_ids[-1, LENGTH - 2 :] = 0
    return pixel_values, input_ids, attention_mask


def _labels():
    """Sample 0 refers to two objects, sample 1 to nothing."""
    first = torch.zeros(2, SIZE, SIZE)
    first[0, :20, :24] = 1.0
    first[1, 40:, 36:] = 1.0
    return [first, torch.zeros(0, SIZE, SIZE)]


def _attention_layer(layer, query, key_value, key_padding=None, blocked=None):
    """``LN(MLP(x) + x)``, ``x = LN(MHA(q, kv) + q)`` (eq. 6) for one sample with additive masks."""
    mha = layer.attention
    heads, dim = mha.num_heads, query.shape[-1]
    if mha.in_proj_weight is not None:
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
    q = (query @ w_q.T + b_q).view(len(query), heads, -1).transpose(0, 1)
    k = (key_value @ w_k.T + b_k).view(len(key_value), heads, -1).transpose(0, 1)
    v = (key_value @ w_v.T + b_v).view(len(key_value), heads, -1).transpose(0, 1)
    scores = q @ k.transpose(1, 2) / (dim // heads) ** 0.5
    if key_padding is not None:
        scores = scores.masked_fill(key_padding[None, None, :], float("-inf"))
    if blocked is not None:
        scores = scores.masked_fill(blocked[None], float("-inf"))
    attended = (scores.softmax(-1) @ v).transpose(0, 1).reshape(len(query), dim)
    x = F.layer_norm(
        query + attended @ mha.out_proj.weight.T + mha.out_proj.bias,
        (dim,),
        layer.attention_norm.weight,
        layer.attention_norm.bias,
    )
    hidden = (
        torch.relu(x @ layer.mlp[0].weight.T + layer.mlp[0].bias) @ layer.mlp[3].weight.T + layer.mlp[3].bias
    )
    return F.layer_norm(x + hidden, (dim,), layer.mlp_norm.weight, layer.mlp_norm.bias)


def test_language_aware_swin_fuses_and_gates_every_stage_lavt_eq1_3():
    """Sec. 3.1 (LAVT eq. 1-3, Sec. 3.3): each stage's ``F_m`` and its gated stream ``V + tanh(...) * F_m``."""
    model = _model()
    pixel_values, input_ids, attention_mask = _inputs()
    with torch.no_grad(), capture_language_fusion(model.model.backbone) as records:
        model(pixel_values, input_ids, attention_mask)
        text = model.model.text_encoder(input_ids, attention_mask)
    assert check_language_fusion(model.model.backbone, records, text, attention_mask) >= 3


def _step_by_step(model, pixel_values, input_ids, attention_mask):
    """Sec. 3.1-3.3 recomputed from the model's blocks, with the wiring between them written out here."""
    inner = model.model
    text = inner.text_encoder(input_ids, attention_mask)  # Q_L
    features = inner.backbone(pixel_values, text, attention_mask)  # F_1..F_4
    batch, channels = features[3].shape[:2]
    f4 = features[3].flatten(2).transpose(1, 2)
    linear, norm = inner.vision_projection
    f_v = F.layer_norm(f4 @ linear.weight.T + linear.bias, (linear.out_features,), norm.weight, norm.bias)
    padding = ~attention_mask.bool()
    extractor = inner.visual_expression_extractor
    steps = {"f_v": f_v, "features": features, "q_l_hat": [], "relevance": [], "curated": [], "q_v_hat": []}
    for b in range(batch):
        q_l_hat = _attention_layer(inner.enhancer.layers[0], text[b], f_v[b])  # Sec. 3.2, first paragraph
        x = f_v[b] @ extractor.vision_embedding.weight.T + extractor.vision_embedding.bias  # eq. 1
        y = q_l_hat @ extractor.text_embedding.weight.T + extractor.text_embedding.bias
        relevance = (y / y.norm(dim=-1, keepdim=True)) @ (x / x.norm(dim=-1, keepdim=True)).T  # eq. 2
        k = 2  # ceil(0.3 * 4)
        curated = torch.zeros_like(relevance, dtype=torch.bool).scatter(
            -1, relevance.topk(k, -1).indices, True
        )
        f_a = (relevance.masked_fill(~curated, float("-inf"))).softmax(-1) @ f_v[b]  # eq. 5
        f_r = _attention_layer(extractor.refinement, f_a, f_v[b], blocked=~curated)  # eq. 6
        cues = attention_mask[b].bool()
        q_v = _attention_layer(extractor.relationship, f_r, f_r, key_padding=~cues) * cues[:, None]  # eq. 7
        for key, value in (
            ("q_l_hat", q_l_hat),
            ("relevance", relevance),
            ("curated", curated),
            ("q_v_hat", q_v),
        ):
            steps[key].append(value)
    steps = {k: torch.stack(v) if isinstance(v, list) else v for k, v in steps.items()}
    # Sec. 3.3: guidance set {Q_L_hat, Q_V_hat}; non-cue rows of Q_V_hat are masked like padding
    guidance = torch.cat([steps["q_l_hat"], steps["q_v_hat"]], dim=1)
    guidance_padding = torch.cat([padding, padding], dim=1)
    decoder = inner.decoder
    x = decoder.input_projection(features[3])
    for stage in range(4):
        layer = decoder.cross_attentions[stage].layer
        _, c, h, w = x.shape
        pixels = x.flatten(2).transpose(1, 2)
        x = torch.stack(
            [
                _attention_layer(layer, pixels[b], guidance[b], key_padding=guidance_padding[b])
                for b in range(batch)
            ]
        )
        x = x.transpose(1, 2).reshape(batch, c, h, w)
        if stage < 3:
            skip = features[2 - stage]  # F_3, F_2, F_1
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
            x = decoder.merges[stage](torch.cat([x, skip], dim=1))
    steps["decoder"] = x
    return steps


def test_forward_follows_sec3_step_by_step():
    """Q_L_hat attends to F_v; the extractor reads Q_L_hat (eq. 1-3, 5-7); the decoder reads the guidance set
    {Q_L_hat, Q_V_hat} and concatenates the encoder skips F_3, F_2, F_1 (Sec. 3.3); the mask is the 2-class
    logit difference of a linear projection."""
    model = _model()
    pixel_values, input_ids, attention_mask = _inputs()
    with torch.no_grad():
        out = model(pixel_values, input_ids, attention_mask)
        steps = _step_by_step(model, pixel_values, input_ids, attention_mask)
    tol = dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.language_expression, steps["q_l_hat"], **tol)
    torch.testing.assert_close(out.relevance_scores, steps["relevance"], **tol)
    assert torch.equal(out.curated_mask, steps["curated"])
    torch.testing.assert_close(out.visual_expression, steps["q_v_hat"], **tol)
    head = model.mask_head
    mask_logits = (
        torch.einsum("bchw,kc->bkhw", steps["decoder"], head.weight[:, :, 0, 0]) + head.bias[:, None, None]
    )
    torch.testing.assert_close(out.mask_logits, mask_logits, **tol)
    torch.testing.assert_close(out.semantic_mask_logits, mask_logits[:, 1] - mask_logits[:, 0], **tol)


def test_no_target_classifier_and_its_loss_app_a():
    """App. A (ReLA's classifier): two-way MLP on the pooled last decoder map, index 1 = no target; its logit
    difference is ``no_target_logits``; CE with weights (0.9, 1.1) for (target, no-target) against ``n_b = 0``."""
    model = _model(**LAMBDAS)
    pixel_values, input_ids, attention_mask = _inputs()
    labels = _labels()
    with torch.no_grad():
        out = model(pixel_values, input_ids, attention_mask, mask_labels=labels)
        decoded = model.model(pixel_values, input_ids, attention_mask).decoder_features
    first, _, second = model.no_target_classifier.mlp
    pooled = decoded.sum(dim=(2, 3)) / (decoded.shape[2] * decoded.shape[3])
    two_way = torch.relu(pooled @ first.weight.T + first.bias) @ second.weight.T + second.bias
    torch.testing.assert_close(out.no_target_logits, two_way[:, 1] - two_way[:, 0], rtol=1e-4, atol=1e-5)
    # sample 0 has targets (label 0, weight 0.9), sample 1 has none (label 1, weight 1.1)
    log_p = two_way.log_softmax(-1)
    expected = -(0.9 * log_p[0, 0] + 1.1 * log_p[1, 1]) / (0.9 + 1.1)
    torch.testing.assert_close(out.loss_dict["loss_nt"], expected, rtol=1e-4, atol=1e-6)


def test_mask_loss_class_weights_and_the_total_loss_sec3_3():
    """Sec. 3.3: weighted CE (0.9 background, 1.1 foreground) on the 2-class map upsampled to the input; eq. 4 on
    ``S_c[CLS] / tau``; total ``lambda_seg L_seg + lambda_cl L_cl + lambda_nt L_nt`` with the config's weights."""
    model = _model(**LAMBDAS)
    with torch.no_grad():
        model.pixel_contrastive_loss.tau.fill_(0.4)
    pixel_values, input_ids, attention_mask = _inputs()
    labels = _labels()
    with torch.no_grad():
        out = model(pixel_values, input_ids, attention_mask, mask_labels=labels)
    union = torch.stack([labels[0].amax(0), torch.zeros(SIZE, SIZE)]).long()
    logits = F.interpolate(out.mask_logits, size=(SIZE, SIZE), mode="bilinear", align_corners=True)
    nll = -logits.log_softmax(1).gather(1, union[:, None])[:, 0]
    weights = torch.where(union == 1, 1.1, 0.9)
    loss_seg = (weights * nll).sum() / weights.sum()
    torch.testing.assert_close(out.loss_dict["loss_seg"], loss_seg, rtol=1e-4, atol=1e-6)

    # eq. 4: the [CLS] row of S_c over tau, on the 2x2 grid
    torch.testing.assert_close(out.contrastive_logits, out.relevance_scores[:, 0].reshape(2, 2, 2) / 0.4)
    cl = F.interpolate(
        out.contrastive_logits[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=True
    )[:, 0]
    probability = cl.sigmoid()
    target = union.float()
    loss_cl = -(target * probability.log() + (1 - target) * (1 - probability).log()).mean()
    torch.testing.assert_close(out.loss_dict["loss_cl"], loss_cl, rtol=1e-4, atol=1e-6)

    total = 1.7 * loss_seg + 0.6 * loss_cl + 0.35 * out.loss_dict["loss_nt"]
    torch.testing.assert_close(out.loss, total, rtol=1e-4, atol=1e-6)


def test_global_cue_switch_drops_the_cls_row_table_6b():
    """Table 6b: without the global cue the [CLS] row (0) is no cue, its visual expression is zero and masked in
    the guidance set, while the first word (row 1) stays a cue."""
    model = _model(use_global_cue=False)
    pixel_values, input_ids, attention_mask = _inputs()
    with torch.no_grad():
        out = model.model(pixel_values, input_ids, attention_mask)
    assert torch.equal(out.visual_expression[:, 0], torch.zeros_like(out.visual_expression[:, 0]))
    assert bool((out.visual_expression[:, 1].abs().sum(-1) > 0).all())
    expected = torch.cat([~attention_mask.bool(), ~attention_mask.bool()], dim=1)
    expected[:, LENGTH] = True
    assert torch.equal(out.guidance_padding_mask, expected)


def test_processor_normalises_with_imagenet_statistics_app_a():
    """App. A: inputs resized to 480 x 480 and normalised with the ImageNet mean / std of the Swin encoder."""
    processor = MetrisImageProcessor()
    pixel_values = processor(constant_image(40, 30))["pixel_values"]
    assert pixel_values.shape == (1, 3, 480, 480)
    assert_imagenet_normalisation(pixel_values)


def test_post_processing_thresholds_are_exercised_near_their_values():
    """``mask_threshold`` on probabilities 0.55 / 0.65, ``threshold`` on component scores, and the no-target
    decision on ``sigmoid(no_target_logits)`` 0.45 / 0.55 (at the input size: no interpolation)."""
    processor = MetrisImageProcessor(size=8)
    probabilities = torch.full((8, 8), 0.2)
    probabilities[:3, :3] = 0.65  # component A, mean 0.65
    probabilities[5:, 5:] = 0.55  # component B, mean 0.55
    semantic = torch.logit(probabilities)[None].repeat(2, 1, 1)
    outputs = {
        "semantic_mask_logits": semantic,
        "no_target_logits": torch.tensor([logit(0.45), logit(0.55)]),
    }
    at_half = processor.post_process_referring_segmentation(outputs, mask_threshold=0.5, threshold=0.5)
    at_060 = processor.post_process_referring_segmentation(outputs, mask_threshold=0.6, threshold=0.5)
    strict = processor.post_process_referring_segmentation(outputs, mask_threshold=0.5, threshold=0.6)
    assert int(at_half[0]["mask"].sum()) == 9 + 9 and int(at_060[0]["mask"].sum()) == 9
    assert bool(at_060[0]["mask"][:3, :3].all())
    assert len(at_half[0]["instances"]) == 2 and len(strict[0]["instances"]) == 1
    assert strict[0]["instances"][0]["score"] == pytest.approx(0.65, abs=1e-5)
    assert [r["no_target"] for r in at_half] == [False, True]
    assert at_half[0]["target_score"] == pytest.approx(0.55, abs=1e-6)
    assert int(at_half[1]["semantic_mask"].sum()) == 18 and not bool(at_half[1]["mask"].any())
