"""The paper's equations as wired inside the full model, checked against independent re-implementations.

The component tests check each function on hand-made inputs; these check that the task model uses them as
the paper says: the phrase cost inside the Hungarian matching (eq. 6), the loss weights of eq. 13 taken from
the config, deep supervision over every block, Mask2Former's masked attention in every block, the sub-layer
order of a Phrase-Object Transformer block (Sec. 3.3), the no-target predictor on the last block (eq. 10-12),
the merged-mask loss reaching the relevance scores through AIA (eq. 8-9), the Phrase-Object Alignment on the
queries (eq. 1-3), the heads on LN(Q) (eq. 4), the scales and level embeddings the blocks read (Sec. 3.3), the
bidirectional object-text attention (Fig. 3), eq. 8 and eq. 10-12 recomputed, the processor's statistics and
the post-processing thresholds near their values.
"""

import inspect

import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from refseg.models.instalign.configuration_instalign import InstAlignConfig
from refseg.models.instalign.image_processing_instalign import InstAlignImageProcessor
from refseg.models.instalign.modeling_instalign import InstAlignForReferringSegmentation
from tests.paper_wiring_helpers import assert_imagenet_normalisation, constant_image, logit

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models run fastest on one thread

SIZE = 64  # tiny preset input; masks at SIZE / 4
# distinct weights, so that swapping any two of them changes the loss; a large lambda_phrase makes the phrase
# cost decide the matching (checked below: without it the assignment differs)
LAMBDAS = dict(
    lambda_score=2.0, lambda_mask=5.0, lambda_phrase=20.0, lambda_merged=3.0, lambda_inst=0.7, lambda_nt=0.2
)


def _model(**overrides) -> InstAlignForReferringSegmentation:
    torch.manual_seed(0)
    return InstAlignForReferringSegmentation(InstAlignConfig.preset("tiny", **overrides)).eval()


def _inputs(batch: int = 3, length: int = 7):
    generator = torch.Generator().manual_seed(3)
    pixel_values = torch.randn(batch, 3, SIZE, SIZE, generator=generator)
    input_ids = torch.randint(3, 100, (batch, length), generator=generator)
    input_ids[:, 0] = 0
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[-1, length - 3 :] = 0
    return pixel_values, input_ids, attention_mask


def _labels():
    """Image 0: two instances, image 1: three, image 2: no target; aligned to 4 px so H/4 targets are binary."""
    a = torch.zeros(2, SIZE, SIZE)
    a[0, :16, :24] = 1.0
    a[1, 40:, 32:] = 1.0
    b = torch.zeros(3, SIZE, SIZE)
    b[0, 8:32, 8:20] = 1.0
    b[1, 36:60, 4:28] = 1.0
    b[2, 20:44, 40:64] = 1.0
    return [a, b, torch.zeros(0, SIZE, SIZE)]


# ------------------------------------------------------------------------------- independent reference
def _mask_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-mask dice + mean BCE (L_mask), rows of ``(n, P)``."""
    p = logits.sigmoid()
    dice = 1 - (2 * (p * targets).sum(-1) + 1) / (p.sum(-1) + targets.sum(-1) + 1)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(-1)
    return dice + bce


def _assignment(score, masks, targets, phrase, lambdas, use_phrase=True):
    """Eq. 5-6 for one image with scipy's Hungarian solver: matched (prediction, target) index lists."""
    n, m = masks.shape[0], targets.shape[0]
    cost = torch.zeros(n, m, dtype=torch.float64)
    for i in range(n):
        for j in range(m):
            cost[i, j] = (
                lambdas["lambda_score"] * F.softplus(-score[i])
                + lambdas["lambda_mask"] * _mask_loss(masks[i : i + 1], targets[j : j + 1])[0]
                + (lambdas["lambda_phrase"] * phrase[i] if use_phrase else 0.0)
            )
    rows, cols = linear_sum_assignment(cost.numpy())
    return rows.tolist(), cols.tolist()


def _reference_terms(prediction, targets, prelu_slope, lambdas):
    """L_merged (eq. 8-9) and L_inst (eq. 7) of one prediction, normalised as documented in the criterion."""
    score, masks, phrase = prediction["score"], prediction["masks"], prediction["phrase"]
    batch, n = score.shape
    small = [F.avg_pool2d(t[:, None], 4)[:, 0].flatten(1) if len(t) else t.new_zeros(0, 256) for t in targets]
    num_masks = max(sum(len(t) for t in small), 1)
    matched_sum, unmatched_sum, merged = 0.0, 0.0, []
    for b in range(batch):
        flat = masks[b].flatten(1)
        rows, cols = _assignment(score[b], flat, small[b], phrase[b], lambdas) if len(small[b]) else ([], [])
        for i, j in zip(rows, cols):
            matched_sum = matched_sum + (
                lambdas["lambda_score"] * F.softplus(-score[b, i])
                + lambdas["lambda_mask"] * _mask_loss(flat[i : i + 1], small[b][j : j + 1])[0]
                + lambdas["lambda_phrase"] * phrase[b, i]
            )
        unmatched = [i for i in range(n) if i not in rows]
        unmatched_sum = unmatched_sum + F.softplus(score[b, unmatched]).sum()
        prelu = torch.where(masks[b] >= 0, masks[b], prelu_slope * masks[b])
        merged_logits = (score[b].sigmoid()[:, None, None] * prelu).sum(0)  # eq. 8 before the sigmoid
        union = small[b].amax(0) if len(small[b]) else torch.zeros(256)
        merged.append(_mask_loss(merged_logits.flatten()[None], union[None])[0])
    loss_inst = matched_sum / num_masks + unmatched_sum / (batch * n)
    return torch.stack(merged).mean(), loss_inst


def _predictions(model, pixel_values, input_ids, attention_mask):
    """The ``K + 1`` predictions (learned queries, then every block) with full-size masks."""
    with torch.no_grad():
        out = model.model(pixel_values, input_ids, attention_mask, output_intermediate_masks=True)
    return [
        {"score": p.score_logits, "masks": p.mask_logits, "phrase": p.phrase_cost, "prediction": p}
        for p in out.intermediate_predictions
    ]


# ------------------------------------------------------------------------------------------------- tests
def test_total_loss_matches_eq13_with_phrase_aligned_matching_and_deep_supervision():
    model = _model(**LAMBDAS)
    config = model.config
    assert config.deep_supervision and config.instance_supervision == "phrase_aligned"
    pixel_values, input_ids, attention_mask = _inputs()
    labels = _labels()
    with torch.no_grad():
        out = model(pixel_values, input_ids, attention_mask, mask_labels=labels)
    predictions = _predictions(model, pixel_values, input_ids, attention_mask)
    assert len(predictions) == config.num_blocks + 1
    slope = model.aggregation.activation.weight.detach()
    terms = [_reference_terms(p, labels, slope, LAMBDAS) for p in predictions]

    # the phrase cost must decide this matching: without it, some image of the final prediction is matched
    # differently (so dropping the phrase term from eq. 6 changes the loss below)
    final = predictions[-1]
    small = [F.avg_pool2d(t[:, None], 4)[:, 0].flatten(1) for t in labels[:2]]
    differs = [
        _assignment(final["score"][b], final["masks"][b].flatten(1), small[b], final["phrase"][b], LAMBDAS)
        != _assignment(
            final["score"][b], final["masks"][b].flatten(1), small[b], final["phrase"][b], LAMBDAS, False
        )
        for b in range(2)
    ]
    assert any(differs), "test scene does not discriminate phrase-aligned from standard matching"

    merged, inst = terms[-1]
    torch.testing.assert_close(out.loss_dict["loss_merged"], merged, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.loss_dict["loss_inst"], inst.float(), rtol=1e-4, atol=1e-5)
    # eq. 10-12 on the last block, BCE against 1[no target]: only image 2 is no-target
    nt_logits = model.no_target_predictor(
        final["prediction"].queries, final["score"], final["prediction"].text_features, attention_mask
    )
    loss_nt = F.binary_cross_entropy_with_logits(nt_logits, torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(out.loss_dict["loss_nt"], loss_nt, rtol=1e-4, atol=1e-6)
    # deep supervision: lambda_merged L_merged + lambda_inst L_inst of the learned queries and blocks 1..K-1
    aux = sum(LAMBDAS["lambda_merged"] * m + LAMBDAS["lambda_inst"] * i for m, i in terms[:-1])
    assert aux > 0
    torch.testing.assert_close(out.loss_dict["loss_aux"], aux.float(), rtol=1e-4, atol=1e-5)
    expected = (
        LAMBDAS["lambda_merged"] * merged + LAMBDAS["lambda_inst"] * inst + LAMBDAS["lambda_nt"] * loss_nt
    )
    torch.testing.assert_close(out.loss, (expected + aux).float(), rtol=1e-4, atol=1e-5)

    # switched off in the config, the auxiliary losses disappear and the rest is unchanged
    model.config.deep_supervision = False
    with torch.no_grad():
        no_deep = model(pixel_values, input_ids, attention_mask, mask_labels=labels)
    assert no_deep.loss_dict["loss_aux"].item() == 0.0
    torch.testing.assert_close(no_deep.loss, expected.float(), rtol=1e-4, atol=1e-5)


def test_criterion_takes_each_loss_weight_from_the_config():
    model = _model(**LAMBDAS)
    criterion = model.criterion
    for name, value in LAMBDAS.items():
        assert getattr(criterion, name) == value, name
    assert criterion.matcher.lambda_score == LAMBDAS["lambda_score"]
    assert criterion.matcher.lambda_mask == LAMBDAS["lambda_mask"]
    assert criterion.matcher.lambda_phrase == LAMBDAS["lambda_phrase"]


def _expected_attention_mask(mask_logits, size, num_heads):
    """Mask2Former: block a query's attention where its previous mask, resized, has probability < 0.5."""
    resized = F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)
    blocked = resized.sigmoid().flatten(2) < 0.5
    blocked[blocked.all(-1)] = False  # an empty mask attends everywhere
    return blocked.repeat_interleave(num_heads, dim=0)


def _capture_attention_masks(model):
    captured, handles = [], []
    for block in model.model.phrase_object_transformer.blocks:

        def hook(module, args, kwargs):
            names = list(inspect.signature(module.forward).parameters)
            bound = dict(zip(names, args)) | kwargs
            captured.append(bound.get("attn_mask"))

        handles.append(block.visual_attention.register_forward_pre_hook(hook, with_kwargs=True))
    return captured, handles


def test_every_block_uses_masked_attention_from_the_previous_prediction():
    model = _model()
    assert model.config.masked_attention
    pixel_values, input_ids, attention_mask = _inputs()
    predictions = _predictions(model, pixel_values, input_ids, attention_mask)
    captured, handles = _capture_attention_masks(model)
    with torch.no_grad():
        masked = model(pixel_values, input_ids, attention_mask, output_aux_outputs=True)
    for handle in handles:
        handle.remove()
    heads = model.config.num_heads
    sizes = [(SIZE // 32, SIZE // 32), (SIZE // 16, SIZE // 16), (SIZE // 8, SIZE // 8)]  # round robin
    assert len(captured) == model.config.num_blocks
    for k, attn_mask in enumerate(captured):
        expected = _expected_attention_mask(predictions[k]["masks"], sizes[k % 3], heads)
        assert expected.any() and not expected.all()  # a real restriction at this scale
        assert attn_mask is not None, f"block {k + 1} attends without a mask"
        assert torch.equal(attn_mask, expected), f"block {k + 1}"

    # with the switch off the blocks attend everywhere, and the outputs change
    unmasked_model = _model(masked_attention=False)
    unmasked_model.load_state_dict(model.state_dict())
    captured, handles = _capture_attention_masks(unmasked_model)
    with torch.no_grad():
        unmasked = unmasked_model(pixel_values, input_ids, attention_mask, output_aux_outputs=True)
    assert captured == [None] * model.config.num_blocks
    assert (masked.pred_masks - unmasked.pred_masks).abs().max() > 1e-3


def _reference_block(block, queries, query_pos, text, text_mask, visual, visual_pos, attn_mask, order):
    """A Phrase-Object Transformer block from its own sub-layers, in the given order (post-norm residuals)."""

    def visual_step(q, t):
        attended = block.visual_attention(
            q + query_pos, visual + visual_pos, visual, attn_mask=attn_mask, need_weights=False
        )[0]
        return block.visual_norm(q + attended), t

    def text_step(q, t):
        return block.object_text_attention(q, t, text_mask, query_pos)

    def self_step(q, t):
        anchor = q + query_pos
        return block.self_norm(q + block.self_attention(anchor, anchor, q, need_weights=False)[0]), t

    def ffn_step(q, t):
        return block.ffn_norm(q + block.ffn(q)), t

    steps = {"visual": visual_step, "text": text_step, "self": self_step, "ffn": ffn_step}
    for name in order:
        queries, text = steps[name](queries, text)
    return queries, text


PAPER_ORDER = ("visual", "text", "self", "ffn")  # Sec. 3.3: V_k cross-attn, object-text, self-attn, FFN


def test_phrase_object_transformer_block_sub_layer_order():
    model = _model()
    pixel_values, input_ids, attention_mask = _inputs()
    calls = []
    handles = [
        block.register_forward_hook(
            lambda module, args, kwargs, output: calls.append((module, args, kwargs, output)),
            with_kwargs=True,
        )
        for block in model.model.phrase_object_transformer.blocks
    ]
    with torch.no_grad():
        model(pixel_values, input_ids, attention_mask)
    for handle in handles:
        handle.remove()
    assert len(calls) == model.config.num_blocks
    for block, args, kwargs, (queries, text) in calls:
        bound = inspect.signature(block.forward).bind(*args, **kwargs).arguments
        inputs = [bound.get(name) for name in ("queries", "query_pos", "text_features", "text_mask")]
        inputs += [bound.get(name) for name in ("visual_features", "visual_pos", "visual_attention_mask")]
        with torch.no_grad():
            ref_q, ref_t = _reference_block(block, *inputs, order=PAPER_ORDER)
            torch.testing.assert_close(queries, ref_q, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(text, ref_t, rtol=1e-5, atol=1e-6)
            # the comparison can tell the orders apart
            for other in (("text", "visual", "self", "ffn"), ("visual", "self", "text", "ffn")):
                alt_q, _ = _reference_block(block, *inputs, order=other)
                assert (alt_q - ref_q).abs().max() > 1e-3, other


def test_no_target_predictor_reads_the_last_block():
    model = _model()
    pixel_values, input_ids, attention_mask = _inputs()
    with torch.no_grad():
        out = model(pixel_values, input_ids, attention_mask, output_aux_outputs=True)
        predictions = [p["prediction"] for p in _predictions(model, pixel_values, input_ids, attention_mask)]
        per_prediction = [
            model.no_target_predictor(p.queries, p.score_logits, p.text_features, attention_mask)
            for p in predictions
        ]
    torch.testing.assert_close(out.no_target_logits, per_prediction[-1], rtol=1e-5, atol=1e-6)
    for k, logits in enumerate(per_prediction[:-1]):  # any earlier block would give another answer
        assert (logits - per_prediction[-1]).abs().max() > 1e-4, k


def test_merged_mask_loss_reaches_the_relevance_scores_through_aia():
    """With only L_merged in the loss, the score head still learns: eq. 8 weights each mask by p_i."""
    model = _model(instance_supervision="none", lambda_nt=0.0, deep_supervision=False).train()
    heads = model.model.phrase_object_transformer.heads
    score_outputs = []
    handle = heads.register_forward_hook(lambda module, args, output: score_outputs.append(output[1]))
    pixel_values, input_ids, attention_mask = _inputs()
    labels = _labels()
    out = model(pixel_values, input_ids, attention_mask, mask_labels=labels)
    handle.remove()
    final_scores = score_outputs[-1]
    final_scores.retain_grad()
    assert set(out.loss_dict) == {"loss_merged", "loss_nt", "loss_aux"}
    out.loss.backward()
    assert heads.score_head.layers[-1].weight.grad.abs().sum() > 0  # the score head gets a gradient
    # ... and it is exactly the gradient of lambda_merged * eq. 9 through eq. 8
    score = final_scores.detach().clone().requires_grad_(True)
    masks = out.pred_masks.detach()
    small = [F.avg_pool2d(t[:, None], 4)[:, 0].flatten(1) if len(t) else None for t in labels]
    slope = model.aggregation.activation.weight.detach()
    losses = []
    for b in range(3):
        prelu = torch.where(masks[b] >= 0, masks[b], slope * masks[b])
        merged = (score[b].sigmoid()[:, None, None] * prelu).sum(0).flatten()
        union = small[b].amax(0) if small[b] is not None else torch.zeros(256)
        losses.append(_mask_loss(merged[None], union[None])[0])
    (model.config.lambda_merged * torch.stack(losses).mean()).backward()
    assert final_scores.grad is not None and final_scores.grad.abs().max() > 0
    torch.testing.assert_close(final_scores.grad, score.grad, rtol=1e-4, atol=1e-7)


# --- eq. 1-4, 8, 10-12 recomputed from the model's own tensors ------------------------------------------------


def _all_predictions(model, pixel_values, input_ids, attention_mask):
    """``Q_k``, ``T_k``, scores, masks, ``R_k`` and ``L_phrase`` after the learned queries and every block."""
    return model.model(
        pixel_values, input_ids, attention_mask, output_intermediate_masks=True
    ).intermediate_predictions


def test_phrase_object_alignment_reads_the_queries_and_skips_padding_eq1_to_eq3():
    """Eq. 1: ``R = softmax(Q T^T / sqrt(C))`` over the real tokens, on the refined queries ``Q_k`` themselves (not
    the head's ``LN(Q_k)``); eq. 2: ``P = R T``; eq. 3: ``L_phrase(i) = 1 - cos(P_i, Q_i)``; for every block."""
    model = _model()
    pixel_values, input_ids, attention_mask = _inputs()
    with torch.no_grad():
        predictions = _all_predictions(model, pixel_values, input_ids, attention_mask)
    valid = attention_mask.bool()
    for k, prediction in enumerate(predictions):
        queries, text = prediction.queries, prediction.text_features
        logits = queries @ text.transpose(1, 2) / queries.shape[-1] ** 0.5
        relevance = logits.masked_fill(~valid[:, None, :], float("-inf")).softmax(-1)
        phrase = relevance @ text
        cosine = (phrase * queries).sum(-1) / (phrase.norm(dim=-1) * queries.norm(dim=-1))
        torch.testing.assert_close(prediction.relevance, relevance, rtol=1e-5, atol=1e-6, msg=f"R_{k}")
        torch.testing.assert_close(
            prediction.phrase_cost, 1 - cosine, rtol=1e-4, atol=1e-5, msg=f"L_phrase {k}"
        )
    assert bool((predictions[-1].relevance[-1, :, -3:] == 0).all())  # padding tokens get exactly 0


def test_heads_read_the_normalised_queries_eq4():
    """Eq. 4: ``s_hat = V_4 . MLP(LN(Q))^T``; the score head also reads ``LN(Q)``."""
    model = _model()
    pixel_values, input_ids, attention_mask = _inputs()
    heads = model.model.phrase_object_transformer.heads
    with torch.no_grad():
        outputs = model.model(pixel_values, input_ids, attention_mask, output_intermediate_masks=True)
        last = outputs.intermediate_predictions[-1]
        normed = F.layer_norm(last.queries, (last.queries.shape[-1],), heads.norm.weight, heads.norm.bias)
        embedding = normed
        for i, layer in enumerate(heads.mask_embed.layers):
            embedding = (
                layer(embedding) if i == len(heads.mask_embed.layers) - 1 else torch.relu(layer(embedding))
            )
        score = heads.score_head.layers[1](torch.relu(heads.score_head.layers[0](normed)))[..., 0]
    masks = torch.einsum("bnc,bchw->bnhw", embedding, outputs.mask_features)
    torch.testing.assert_close(last.mask_logits, masks, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(last.score_logits, score, rtol=1e-4, atol=1e-5)


def test_blocks_cycle_over_the_three_scales_with_level_embeddings_sec3_3():
    """Sec. 3.3: block ``k`` reads ``V_k`` = scale ``(k - 1) mod 3`` (strides 32, 16, 8) flattened, plus the learned
    level embedding of that scale; its keys get the sine positions of that scale."""
    model = _model(num_blocks=4)  # the fourth block wraps round to stride 32
    transformer = model.model.phrase_object_transformer
    pixel_values, input_ids, attention_mask = _inputs()
    seen, scales = [], []
    hooks = [transformer.register_forward_pre_hook(lambda module, args: scales.extend(args[0]))]
    for block in transformer.blocks:
        hooks.append(block.register_forward_pre_hook(lambda module, args: seen.append((args[4], args[5]))))
    with torch.no_grad():
        model(pixel_values, input_ids, attention_mask)
    for hook in hooks:
        hook.remove()
    assert len(seen) == len(transformer.blocks) >= 4
    for k, (visual, position) in enumerate(seen):
        level = k % 3
        feature = scales[level]
        expected = feature.flatten(2).transpose(1, 2) + transformer.level_embed.weight[level]
        torch.testing.assert_close(visual, expected)
        torch.testing.assert_close(
            position, transformer.position_embedding(feature).flatten(2).transpose(1, 2)
        )
    assert [tuple(s.shape[-2:]) for s in scales] == [(2, 2), (4, 4), (8, 8)]


def test_aggregation_and_no_target_predictor_eq8_eq10_to_eq12():
    """Eq. 8: ``M = sum_i sigmoid(p_i) PReLU(s_i)`` (slope set to 0.3); eq. 10: ``Q_global = sum_i sigmoid(p_i)
    Q_K^i``; ``T_sen`` the mean of ``T_K`` over real tokens; eq. 11-12: a 2-layer MLP on ``[Q_global, T_sen]``;
    the BCE of eq. 13 against ``1[M_b = 0]``."""
    model = _model()
    with torch.no_grad():
        model.aggregation.activation.weight.fill_(0.3)
    pixel_values, input_ids, attention_mask = _inputs()
    with torch.no_grad():
        out = model(pixel_values, input_ids, attention_mask, mask_labels=_labels())
        last = _all_predictions(model, pixel_values, input_ids, attention_mask)[-1]
    p = out.pred_scores.sigmoid()
    prelu = torch.where(out.pred_masks >= 0, out.pred_masks, 0.3 * out.pred_masks)
    torch.testing.assert_close(
        out.semantic_mask_logits, (p[:, :, None, None] * prelu).sum(1), rtol=1e-4, atol=1e-5
    )

    q_global = (p[:, :, None] * last.queries).sum(1)
    weights = attention_mask[:, :, None].float()
    t_sen = (last.text_features * weights).sum(1) / weights.sum(1)
    first, second = model.no_target_predictor.mlp.layers
    expected = second(torch.relu(first(torch.cat([q_global, t_sen], dim=-1))))[:, 0]
    torch.testing.assert_close(out.no_target_logits, expected, rtol=1e-4, atol=1e-5)
    is_empty = torch.tensor([0.0, 0.0, 1.0])  # _labels(): images 0 and 1 have targets, image 2 none
    q = expected.sigmoid()
    bce = -(is_empty * q.log() + (1 - is_empty) * (1 - q).log()).mean()
    torch.testing.assert_close(out.loss_dict["loss_nt"], bce, rtol=1e-4, atol=1e-6)


def test_object_text_attention_updates_both_sides_from_one_affinity_fig3():
    """Fig. 3: ``A = (Q W_q)(T W_k)^T / sqrt(d)``; objects read the real words (softmax over words), words read the
    objects (softmax over objects), both from the layer's inputs, each with a post-norm residual."""
    model = _model()
    layer = model.model.phrase_object_transformer.blocks[0].object_text_attention
    generator = torch.Generator().manual_seed(5)
    queries = torch.randn(2, 5, 32, generator=generator)
    query_pos = torch.randn(2, 5, 32, generator=generator)
    text = torch.randn(2, 6, 32, generator=generator)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    with torch.no_grad():
        new_queries, new_text = layer(queries, text, mask, query_pos)
        heads, d = layer.num_heads, 32 // layer.num_heads
        for b in range(2):
            q = layer.query_proj(queries[b] + query_pos[b]).view(5, heads, d).transpose(0, 1)
            k = layer.text_key_proj(text[b]).view(6, heads, d).transpose(0, 1)
            affinity = q @ k.transpose(1, 2) / d**0.5  # (h, N, L)
            words = mask[b].bool()
            to_text = affinity.masked_fill(~words[None, None, :], float("-inf")).softmax(-1)
            object_update = to_text @ layer.text_value_proj(text[b]).view(6, heads, d).transpose(0, 1)
            object_update = object_update.transpose(0, 1).reshape(5, 32)
            to_objects = affinity.transpose(1, 2).softmax(-1)  # (h, L, N)
            text_update = to_objects @ layer.query_value_proj(queries[b]).view(5, heads, d).transpose(0, 1)
            text_update = text_update.transpose(0, 1).reshape(6, 32)
            expected_q = layer.query_norm(queries[b] + layer.query_out_proj(object_update))
            expected_t = layer.text_norm(text[b] + layer.text_out_proj(text_update))
            torch.testing.assert_close(new_queries[b], expected_q, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(new_text[b], expected_t, rtol=1e-5, atol=1e-5)


def test_processor_normalises_with_imagenet_statistics():
    """Swin-B / Mask2Former inputs: rescaled to [0, 1], normalised with the ImageNet mean and std."""
    processor = InstAlignImageProcessor()
    pixel_values = processor(constant_image(50, 70))["pixel_values"]
    assert_imagenet_normalisation(pixel_values)


def test_post_processing_thresholds_are_exercised_near_their_values():
    """``threshold`` on query probabilities 0.55 / 0.65, ``mask_threshold`` on pixel probabilities 0.55 / 0.65 and
    the no-target decision on 0.45 / 0.55, at the input size (no interpolation)."""
    processor = InstAlignImageProcessor(size=8)
    probabilities = torch.full((8, 8), 0.2)
    probabilities[:3, :3] = 0.65
    probabilities[5:, 5:] = 0.55
    masks = torch.stack([torch.logit(probabilities), torch.logit(probabilities).flip(0)])[None].repeat(
        2, 1, 1, 1
    )
    outputs = {
        "pred_masks": masks,
        "pred_scores": torch.tensor([[logit(0.65), logit(0.55)]] * 2),
        "semantic_mask_logits": torch.logit(probabilities)[None].repeat(2, 1, 1),
        "no_target_logits": torch.tensor([logit(0.45), logit(0.55)]),
    }
    loose = processor.post_process_referring_segmentation(outputs, threshold=0.5, instance_nms_threshold=None)
    strict = processor.post_process_referring_segmentation(
        outputs, threshold=0.6, mask_threshold=0.6, instance_nms_threshold=None
    )
    assert int(loose[0]["mask"].sum()) == 18 and int(strict[0]["mask"].sum()) == 9
    assert [inst["score"] for inst in loose[0]["instances"]] == pytest.approx([0.65, 0.55], abs=1e-5)
    assert len(strict[0]["instances"]) == 1 and int(strict[0]["instances"][0]["mask"].sum()) == 9
    assert [r["no_target"] for r in loose] == [False, True]
    assert loose[0]["target_score"] == pytest.approx(0.55, abs=1e-6)
