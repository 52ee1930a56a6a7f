"""Inject single-point regressions into a scratch copy of ``src/`` and report which ones the tests catch.

Each mutation replaces one exact snippet of one source file (a wrong sign, a swapped weight, a dropped term,
an ignored argument ...) so that one equation or config switch of a paper is wired wrongly. For every mutation
the script copies ``src/`` (of this tree, or of a commit checked out with ``git worktree add`` under ``/tmp``
with ``--ref``) into a temporary directory once, applies the mutation there (never in this tree),
runs the model's test selection with ``PYTHONPATH`` pointing at the copy, restores the file and records whether
a test failed ("caught") or every test passed ("survived"). A snippet that is not found exactly once is an
error: the code moved, and the mutation must be updated before the numbers mean anything.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python scripts/dev/inject_regressions.py                  # every model, JSON on stdout
    python scripts/dev/inject_regressions.py --model metris --model instalign    # some models
    python scripts/dev/inject_regressions.py --check                            # only check that snippets apply
    python scripts/dev/inject_regressions.py --list                             # print the mutations
    python scripts/dev/inject_regressions.py --model metris --only metris-gate-sign
    python scripts/dev/inject_regressions.py --ref 95ca31d                      # source and tests of a commit

The JSON has, per model, ``caught``/``total`` and one row per mutation with its result (``caught``,
``survived``, ``timeout`` or ``error``) and the first failing test; a timeout is not counted as caught (on a
busy machine raise ``--timeout``, which also bounds the unmutated run). Progress goes to stderr, one line per
mutation, so a run stopped early still leaves its results. A developer tool: not part of the package.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutation:
    """One single-point regression: in ``file`` (relative to ``src/refseg``) replace ``original`` by ``mutated``."""

    id: str
    file: str
    original: str
    mutated: str
    description: str


# ---------------------------------------------------------------------------------------------------------------
# mutations of blocks that several models share (listed under each model that uses them)
# ---------------------------------------------------------------------------------------------------------------

IMAGE_MEAN = Mutation(
    "image-mean",
    "image_processing_utils.py",
    "image_mean if image_mean is not None else IMAGENET_DEFAULT_MEAN,",
    "image_mean if image_mean is not None else (0.5, 0.5, 0.5),",
    "processor: default image mean 0.5 instead of the ImageNet mean",
)
IMAGE_STD = Mutation(
    "image-std",
    "image_processing_utils.py",
    "image_std if image_std is not None else IMAGENET_DEFAULT_STD,",
    "image_std if image_std is not None else (0.5, 0.5, 0.5),",
    "processor: default image std 0.5 instead of the ImageNet std",
)
GATE_SIGN = Mutation(
    "gate-sign",
    "modeling/language_aware_swin.py",
    "hidden_states = hidden_states + gate(fused) * fused",
    "hidden_states = hidden_states - gate(fused) * fused",
    "LAVT Sec. 3.3: the language gate's contribution subtracted instead of added",
)
GATE_TANH = Mutation(
    "gate-tanh",
    "modeling/pixel_word_attention.py",
    "return torch.tanh_(self.fc2(F.relu(self.fc1(multimodal), inplace=True)))",
    "return torch.sigmoid(self.fc2(F.relu(self.fc1(multimodal), inplace=True)))",
    "LAVT Sec. 3.3: the gate uses sigmoid instead of tanh (never closed, never negative)",
)
PWAM_PRODUCT = Mutation(
    "pwam-product",
    "modeling/pixel_word_attention.py",
    "self.multimodal_projection(visual_features * language_features)",
    "self.multimodal_projection(visual_features + language_features)",
    "LAVT eq. 3: pixel and language features added instead of multiplied element-wise",
)
PWAM_SCALE = Mutation(
    "pwam-scale",
    "modeling/pixel_word_attention.py",
    "key = self.key_projection(text) * (keep * self.head_dim**-0.5)",
    "key = self.key_projection(text) * keep",
    "LAVT eq. 1: pixel-word attention without the 1/sqrt(d) scale",
)
PWAM_PADDING = Mutation(
    "pwam-padding",
    "modeling/pixel_word_attention.py",
    "scores = scores.masked_fill(~valid[:, None, None, :], torch.finfo(scores.dtype).min)\n"
    "        weights = scores.softmax(dim=-1) * valid[:, None, None, :].to(scores.dtype)",
    "weights = scores.softmax(dim=-1)",
    "LAVT eq. 1: padded words receive attention weight",
)
NO_TARGET_DECISION = Mutation(
    "no-target-decision",
    "modeling/post_processing.py",
    "no_target = no_target_prob > no_target_threshold",
    "no_target = no_target_prob < no_target_threshold",
    "post-processing: the no-target decision inverted",
)

# ---------------------------------------------------------------------------------------------------------------
# METRIS
# ---------------------------------------------------------------------------------------------------------------

_M = "models/metris/"
METRIS = [
    IMAGE_MEAN,
    IMAGE_STD,
    GATE_SIGN,
    GATE_TANH,
    PWAM_PRODUCT,
    PWAM_SCALE,
    Mutation(
        "metris-mask-threshold",
        _M + "image_processing_metris.py",
        "probabilities > mask_threshold,",
        "probabilities > 0.5,",
        "post-processing ignores mask_threshold",
    ),
    Mutation(
        "metris-instance-threshold",
        _M + "image_processing_metris.py",
        'if inst["score"] > threshold',
        'if inst["score"] > 0.5',
        "post-processing ignores the instance threshold",
    ),
    Mutation(
        "metris-no-target-sign",
        _M + "modeling_metris.py",
        "no_target_logits = two_way[:, 1] - two_way[:, 0]",
        "no_target_logits = two_way[:, 0] - two_way[:, 1]",
        "App. A: no-target logit sign inverted (target minus no-target)",
    ),
    Mutation(
        "metris-no-target-label",
        _M + "modeling_metris.py",
        "no_target_loss(two_way, is_empty, config.no_target_class_weights)",
        "no_target_loss(two_way, ~is_empty, config.no_target_class_weights)",
        "App. A: no-target label inverted in the loss",
    ),
    Mutation(
        "metris-mask-class-weights",
        _M + "criterion.py",
        'if mask_loss == "ce":\n        weight = torch.tensor(class_weights, dtype',
        'if mask_loss == "ce":\n        weight = torch.tensor(class_weights[::-1], dtype',
        "Sec. 3.3: (background, foreground) class weights of the mask loss swapped",
    ),
    Mutation(
        "metris-no-target-class-weights",
        _M + "criterion.py",
        "    weight = torch.tensor(class_weights, dtype=logits.dtype, device=logits.device)\n"
        "    if active_loss_normalizer() is None:\n        return",
        "    weight = torch.tensor(class_weights[::-1], dtype=logits.dtype, device=logits.device)\n"
        "    if active_loss_normalizer() is None:\n        return",
        "App. A: (target, no-target) class weights swapped",
    ),
    Mutation(
        "metris-extractor-raw-queries",
        _M + "modeling_metris.py",
        "vision_tokens, language, cues, return_attention=output_attentions",
        "vision_tokens, text_tokens, cues, return_attention=output_attentions",
        "Sec. 3.2: the extractor reads the raw Q_L instead of the enhanced Q_L_hat",
    ),
    Mutation(
        "metris-decoder-skip-zeros",
        _M + "segmentation_decoder.py",
        "torch.cat([x, skip], dim=1)",
        "torch.cat([x, torch.zeros_like(skip)], dim=1)",
        "Sec. 3.3: the decoder concatenates zeros instead of the encoder skip features",
    ),
    Mutation(
        "metris-cosine-unnormalised",
        _M + "visual_expression_extractor.py",
        "x = F.normalize(vision_embeddings, dim=-1)",
        "x = vision_embeddings",
        "eq. 2: relevance is a dot product instead of the cosine similarity",
    ),
    Mutation(
        "metris-topk-lowest",
        _M + "visual_expression_extractor.py",
        "indices = relevance.topk(k, dim=-1).indices",
        "indices = relevance.topk(k, dim=-1, largest=False).indices",
        "eq. 2: curation keeps the least relevant tokens",
    ),
    Mutation(
        "metris-refinement-unmasked",
        _M + "visual_expression_extractor.py",
        "aggregated, vision_tokens, blocked=~curated, return_weights=return_attention",
        "aggregated, vision_tokens, blocked=None, return_weights=return_attention",
        "eq. 6: the cross-attention ignores the dynamic mask M",
    ),
    Mutation(
        "metris-aggregation-softmax-dim",
        _M + "visual_expression_extractor.py",
        "weights = scores.softmax(dim=-1)\n    aggregated = weights @ vision_tokens",
        "weights = scores.softmax(dim=-2)\n    aggregated = weights @ vision_tokens",
        "eq. 5: softmax over the cues instead of the vision tokens",
    ),
    Mutation(
        "metris-relationship-padding",
        _M + "visual_expression_extractor.py",
        "visual, _ = self.relationship(refined, refined, key_padding_mask=~cue_mask)",
        "visual, _ = self.relationship(refined, refined, key_padding_mask=None)",
        "eq. 7: relationship modelling attends to non-cue rows",
    ),
    Mutation(
        "metris-contrastive-row",
        _M + "modeling_metris.py",
        "outputs.relevance_scores[:, 0], outputs.grid_size",
        "outputs.relevance_scores[:, 1], outputs.grid_size",
        "eq. 4: the contrastive loss reads a word's row of S_c instead of the [CLS] row",
    ),
    Mutation(
        "metris-tau-multiplies",
        _M + "pixel_contrastive_loss.py",
        "return (global_relevance / tau).reshape",
        "return (global_relevance * tau).reshape",
        "eq. 4: s * tau instead of s / tau",
    ),
    Mutation(
        "metris-guidance-no-visual",
        _M + "modeling_metris.py",
        "guidance = torch.cat([language, visual], dim=1)",
        "guidance = torch.cat([language, language], dim=1)",
        "Sec. 3.3 / Table 5: the full guidance set drops Q_V_hat",
    ),
    Mutation(
        "metris-guidance-padding",
        _M + "modeling_metris.py",
        "guidance_padding = torch.cat([padding, ~cues], dim=1)",
        "guidance_padding = torch.cat([padding, padding.new_zeros(cues.shape)], dim=1)",
        "Sec. 3.3: the decoder attends to visual tokens of non-cue rows",
    ),
    Mutation(
        "metris-global-cue",
        _M + "modeling_metris.py",
        "cues[:, 0] = False",
        "cues[:, 1] = False",
        "Table 6b: use_global_cue=False drops the first word instead of [CLS]",
    ),
    Mutation(
        "metris-lambda-nt",
        _M + "modeling_metris.py",
        'loss = loss + config.lambda_nt * loss_dict["loss_nt"]',
        'loss = loss + config.lambda_cl * loss_dict["loss_nt"]',
        "App. A: the no-target term weighted by lambda_cl",
    ),
    Mutation(
        "metris-semantic-two-class",
        _M + "modeling_metris.py",
        "semantic = mask_logits[:, 1] - mask_logits[:, 0]",
        "semantic = mask_logits[:, 1]",
        "Sec. 3.3: the foreground logit is not the 2-class logit difference",
    ),
    Mutation(
        "metris-enhancer-self",
        _M + "linguistic_enhancement.py",
        "text_tokens, _ = layer(text_tokens, vision_tokens)",
        "text_tokens, _ = layer(text_tokens, text_tokens)",
        "Sec. 3.2: the linguistic enhancement attends to the words instead of the vision tokens",
    ),
    Mutation(
        "metris-attention-residual",
        _M + "attention.py",
        "x = self.attention_norm(query + attended)",
        "x = self.attention_norm(attended)",
        "eq. 6: the attention layer drops its residual",
    ),
]

# ---------------------------------------------------------------------------------------------------------------
# presence & plurality
# ---------------------------------------------------------------------------------------------------------------

_P = "models/presence_plurality/"
PRESENCE = [
    IMAGE_MEAN,
    IMAGE_STD,
    GATE_SIGN,
    GATE_TANH,
    PWAM_PRODUCT,
    PWAM_PADDING,
    NO_TARGET_DECISION,
    Mutation(
        "presence-mask-threshold",
        _P + "image_processing_presence_plurality.py",
        "logits.sigmoid() > mask_threshold, no_target_prob",
        "logits.sigmoid() > 0.5, no_target_prob",
        "post-processing ignores mask_threshold",
    ),
    Mutation(
        "presence-head-mean-states",
        _P + "modeling_presence_plurality.py",
        "presence_logits = self.presence_head(query.visual_states[-1])",
        "presence_logits = self.presence_head(torch.stack(query.visual_states).mean(0))",
        "eq. 4: the presence head reads the mean of e_1..e_L instead of e_L",
    ),
    Mutation(
        "presence-plurality-reads-eL",
        _P + "modeling_presence_plurality.py",
        "plurality_logits = self.plurality_head(query.text_state)",
        "plurality_logits = self.plurality_head(query.visual_states[-1])",
        "eq. 3: the plurality head reads e_L instead of e_0",
    ),
    Mutation(
        "presence-keys-without-position",
        _P + "target_query.py",
        "keys = memory if memory_position is None else memory + memory_position",
        "keys = memory",
        "eq. 4: keys without their position/level embedding",
    ),
    Mutation(
        "presence-no-target-sign",
        _P + "modeling_presence_plurality.py",
        "no_target_logits=-present_score,",
        "no_target_logits=present_score,",
        "Sec. 3.4: no-target logit sign inverted",
    ),
    Mutation(
        "presence-label-inverted",
        _P + "criterion.py",
        "presence = (counts_t > 0).long()",
        "presence = (counts_t == 0).long()",
        "eq. 5: y_pr = 1 for no-target samples",
    ),
    Mutation(
        "presence-plurality-label",
        _P + "criterion.py",
        "plurality = (counts_t >= 2).long()",
        "plurality = (counts_t >= 1).long()",
        "eq. 5: y_pl = 1 for a single target",
    ),
    Mutation(
        "presence-pixel-class-weights",
        _P + "criterion.py",
        "weights = self.pixel_class_weights.to(mask_logits.dtype)",
        "weights = self.pixel_class_weights.flip(0).to(mask_logits.dtype)",
        "eq. 5: (background, foreground) pixel class weights swapped",
    ),
    Mutation(
        "presence-presence-class-weights",
        _P + "criterion.py",
        "presence_weights = self.presence_class_weights.to(presence_logits.dtype)",
        "presence_weights = self.presence_class_weights.flip(0).to(presence_logits.dtype)",
        "eq. 5: (absent, present) presence class weights swapped",
    ),
    Mutation(
        "presence-lambda-presence",
        _P + "criterion.py",
        "loss = self.lambda_pixel * loss_pixel + self.lambda_presence * loss_presence",
        "loss = self.lambda_pixel * loss_pixel + self.lambda_plurality * loss_presence",
        "eq. 5: the presence term weighted by lambda_pl",
    ),
    Mutation(
        "presence-ignore-no-target",
        _P + "criterion.py",
        "plurality = plurality.masked_fill(counts_t == 0, IGNORE_INDEX)",
        "plurality = plurality",
        "Sec. 3.4: no-target samples enter the plurality term despite ignore_no_target",
    ),
    Mutation(
        "presence-letterbox-loss",
        _P + "criterion.py",
        "target = target.masked_fill(pixel_mask.to(target.device) < 0.5, IGNORE_INDEX)",
        "target = target",
        "eq. 5: L_pixel counts the letterbox padding",
    ),
    Mutation(
        "presence-feature-level",
        _P + "modeling_presence_plurality.py",
        "level = 4 - self.config.presence_feature_level",
        "level = 3 - self.config.presence_feature_level",
        "eq. 4: the target query reads the wrong pixel-decoder level",
    ),
    Mutation(
        "presence-feature-offset",
        _P + "modeling_presence_plurality.py",
        "states = outputs.decoder_hidden_states[offset : offset + self.config.pixel_decoder_layers]",
        "states = outputs.decoder_hidden_states[offset + 1 : offset + 1 + self.config.pixel_decoder_layers]",
        "eq. 4: e_l reads f_l instead of f_{l-1}",
    ),
    Mutation(
        "presence-text-padding",
        _P + "target_query.py",
        "self.text_projection(text_features), None, ~text_mask.bool()",
        "self.text_projection(text_features), None, None",
        "eq. 3: the target query attends to padded words",
    ),
    Mutation(
        "presence-threshold-class",
        _P + "modeling_presence_plurality.py",
        "no_target = presence_logits.softmax(-1)[:, 1] < self.config.presence_threshold",
        "no_target = presence_logits.softmax(-1)[:, 0] < self.config.presence_threshold",
        "Sec. 3.4: inference gates on the absent probability",
    ),
    Mutation(
        "presence-semantic-difference",
        _P + "modeling_presence_plurality.py",
        "semantic = logits[:, 1] - logits[:, 0]",
        "semantic = logits[:, 1]",
        "Sec. 3.1: the foreground logit is not the 2-class logit difference",
    ),
    Mutation(
        "presence-query-residual",
        _P + "target_query.py",
        "query = self.attention_norm(query + self.dropout(attended))",
        "query = self.attention_norm(self.dropout(attended))",
        "eq. 3-4: the cross-attention block drops its residual",
    ),
]

# ---------------------------------------------------------------------------------------------------------------
# InstAlign
# ---------------------------------------------------------------------------------------------------------------

_A = "models/instalign/"
INSTALIGN = [
    IMAGE_MEAN,
    IMAGE_STD,
    NO_TARGET_DECISION,
    Mutation(
        "instalign-poa-on-ln-q",
        _A + "phrase_object_transformer.py",
        "_, score_logits, mask_logits = self.heads(queries, mask_features, sentence)\n"
        "        relevance, _, phrase_cost = self.alignment(queries, text_features, text_mask)",
        "normed, score_logits, mask_logits = self.heads(queries, mask_features, sentence)\n"
        "        relevance, _, phrase_cost = self.alignment(normed, text_features, text_mask)",
        "eq. 1-3: phrase-object alignment on LN(Q) instead of Q",
    ),
    Mutation(
        "instalign-eq1-scale",
        _A + "phrase_object_alignment.py",
        "logits = queries @ text_features.transpose(1, 2) / math.sqrt(queries.shape[-1])",
        "logits = queries @ text_features.transpose(1, 2)",
        "eq. 1: relevance without the 1/sqrt(C) scale",
    ),
    Mutation(
        "instalign-eq3-other-query",
        _A + "phrase_object_alignment.py",
        "cosine_similarity(phrase_features, queries, dim=-1, eps=1e-8)",
        "cosine_similarity(phrase_features, queries.roll(1, dims=1), dim=-1, eps=1e-8)",
        "eq. 3: P_i compared with another query",
    ),
    Mutation(
        "instalign-eq1-padding",
        _A + "phrase_object_alignment.py",
        "logits = logits.masked_fill(~text_mask.bool()[:, None, :], torch.finfo(logits.dtype).min)",
        "logits = logits",
        "eq. 1: padding tokens get relevance",
    ),
    Mutation(
        "instalign-aia-logit-scores",
        _A + "aggregation.py",
        "scores = score_logits.sigmoid()",
        "scores = score_logits",
        "eq. 8: p_i are the score logits instead of their sigmoid",
    ),
    Mutation(
        "instalign-aia-no-prelu",
        _A + "aggregation.py",
        'return torch.einsum("bn,bnhw->bhw", scores, self.activation(mask_logits))',
        'return torch.einsum("bn,bnhw->bhw", scores, mask_logits)',
        "eq. 8: PReLU dropped",
    ),
    Mutation(
        "instalign-eq10-softmax",
        _A + "no_target.py",
        'q_global = torch.einsum("bn,bnc->bc", score_logits.sigmoid(), queries)',
        'q_global = torch.einsum("bn,bnc->bc", score_logits.softmax(-1), queries)',
        "eq. 10: weights are a softmax over queries instead of sigmoid scores",
    ),
    Mutation(
        "instalign-tsen-padding",
        _A + "no_target.py",
        "return (text_features * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)",
        "return text_features.mean(dim=1)",
        "Sec. 3.6: T_sen averages the padding tokens too",
    ),
    Mutation(
        "instalign-eq11-no-sentence",
        _A + "no_target.py",
        "return torch.cat([q_global, t_sen], dim=-1)  # eq. 11",
        "return torch.cat([q_global, q_global], dim=-1)  # eq. 11",
        "eq. 11: Q_nt without T_sen",
    ),
    Mutation(
        "instalign-nt-first-prediction",
        _A + "modeling_instalign.py",
        "last.queries, last.score_logits, last.text_features, attention_mask",
        "predictions[0].queries, predictions[0].score_logits, predictions[0].text_features, attention_mask",
        "eq. 10-12: the no-target predictor reads the learned queries instead of the last block",
    ),
    Mutation(
        "instalign-phrase-cost-sign",
        _A + "criterion.py",
        "cost = cost + self.lambda_phrase * phrase_cost.float()[:, None]",
        "cost = cost - self.lambda_phrase * phrase_cost.float()[:, None]",
        "eq. 6: the phrase cost rewards misalignment",
    ),
    Mutation(
        "instalign-score-cost-sign",
        _A + "criterion.py",
        "cost = self.lambda_score * F.softplus(-score_logits.float())",
        "cost = self.lambda_score * F.softplus(score_logits.float())",
        "eq. 6: score cost BCE(p, 0) instead of BCE(p, 1)",
    ),
    Mutation(
        "instalign-masked-attention-sign",
        _A + "phrase_object_transformer.py",
        "blocked = mask_logits.flatten(2) < 0.0",
        "blocked = mask_logits.flatten(2) > 0.0",
        "Sec. 3.3: masked attention blocks the foreground instead of the background",
    ),
    Mutation(
        "instalign-text-update-softmax",
        _A + "object_text_attention.py",
        "affinity.transpose(-1, -2).softmax(-1)",
        "affinity.transpose(-1, -2).softmax(-2)",
        "Fig. 3: words attend with a softmax over words instead of objects",
    ),
    Mutation(
        "instalign-object-text-padding",
        _A + "object_text_attention.py",
        "to_text = affinity.masked_fill(pad, torch.finfo(affinity.dtype).min)",
        "to_text = affinity",
        "Fig. 3: objects attend to padding tokens",
    ),
    Mutation(
        "instalign-mask-threshold",
        _A + "image_processing_instalign.py",
        "return upsample_logits(logits, input_size, size).sigmoid_() > mask_threshold",
        "return upsample_logits(logits, input_size, size).sigmoid_() > 0.5",
        "post-processing ignores mask_threshold",
    ),
    Mutation(
        "instalign-nt-label",
        _A + "criterion.py",
        "labels = is_no_target.to(no_target_logits.dtype)",
        "labels = (~is_no_target).to(no_target_logits.dtype)",
        "eq. 13: no-target label inverted",
    ),
    Mutation(
        "instalign-no-phrase-loss",
        _A + "criterion.py",
        "self.lambda_phrase = lambda_phrase if self.use_phrase else 0.0",
        "self.lambda_phrase = 0.0",
        "Table 3a: phrase-aligned supervision without the phrase term",
    ),
    Mutation(
        "instalign-visual-keys-no-position",
        _A + "phrase_object_transformer.py",
        "visual_features + visual_pos,",
        "visual_features,",
        "Sec. 3.3: visual cross-attention keys without sine positions",
    ),
    Mutation(
        "instalign-no-level-embed",
        _A + "phrase_object_transformer.py",
        "visual.append(feature.flatten(2).transpose(1, 2) + self.level_embed.weight[level])",
        "visual.append(feature.flatten(2).transpose(1, 2))",
        "Sec. 3.3: visual features without their level embedding",
    ),
    Mutation(
        "instalign-one-scale",
        _A + "phrase_object_transformer.py",
        "level = (index - 1) % NUM_SCALES",
        "level = 0",
        "Sec. 3.3: every block reads the stride-32 scale instead of cycling over three",
    ),
    Mutation(
        "instalign-mask-embed-raw",
        _A + "heads.py",
        'torch.einsum("bnc,bchw->bnhw", self.mask_embed(normed), mask_features)',
        'torch.einsum("bnc,bchw->bnhw", self.mask_embed(queries), mask_features)',
        "eq. 4: the mask embedding reads Q instead of LN(Q)",
    ),
]

# ---------------------------------------------------------------------------------------------------------------
# InstanceVG
# ---------------------------------------------------------------------------------------------------------------

_V = "models/instancevg/"
INSTANCEVG = [
    IMAGE_MEAN,
    IMAGE_STD,
    Mutation(
        "instancevg-text-filter-mode",
        _V + "instance_query_generator.py",
        'scores = masked.mean(-1) if mode == "mean" else masked.norm(dim=-1)',
        'scores = masked.norm(dim=-1) if mode == "mean" else masked.mean(-1)',
        "Algorithm 1: mean and L2-norm ranking swapped",
    ),
    Mutation(
        "instancevg-minimap-invalid",
        _V + "instance_query_generator.py",
        'return attention.masked_fill(~valid[..., None], float("-inf")).amax(1)',
        "return attention.amax(1)",
        "Sec. 3.2.1: the minimap includes invalid filtered tokens",
    ),
    Mutation(
        "instancevg-dps-distance-sign",
        _V + "instance_query_generator.py",
        "combined = scores + (self.distance_weight * nearest) / diag",
        "combined = scores - (self.distance_weight * nearest) / diag",
        "Algorithm 2: distance term penalises instead of rewarding spread",
    ),
    Mutation(
        "instancevg-point-xy",
        _V + "instance_query_generator.py",
        "[(cols.float() + 0.5) / width, (rows.float() + 0.5) / height]",
        "[(rows.float() + 0.5) / height, (cols.float() + 0.5) / width]",
        "Algorithm 2: points as (y, x) instead of (x, y)",
    ),
    Mutation(
        "instancevg-eq2-no-point-features",
        _V + "instance_query_generator.py",
        "torch.cat([decoded, point_features], dim=-1)",
        "torch.cat([decoded, decoded], dim=-1)",
        "eq. 2: Q_instance without the image feature under the point",
    ),
    Mutation(
        "instancevg-no-point-prior",
        _V + "point_prior_decoder.py",
        "reference = reference + points",
        "reference = reference",
        "Table 9: point prior dropped from the reference points",
    ),
    Mutation(
        "instancevg-box-offset",
        _V + "heads.py",
        "torch.cat([inverse_sigmoid(reference_points), torch.zeros_like(reference_points)], dim=-1)",
        "torch.cat([reference_points, torch.zeros_like(reference_points)], dim=-1)",
        "Sec. 3.3: box centres offset by the reference, not its inverse sigmoid",
    ),
    Mutation(
        "instancevg-no-target-pool",
        _V + "heads.py",
        "return super().forward(global_features.flatten(2).transpose(1, 2)).mean(1)",
        "return super().forward(global_features.flatten(2).transpose(1, 2)).amax(1)",
        "Sec. 3.5: no-target head max-pools instead of averaging",
    ),
    Mutation(
        "instancevg-no-target-sign",
        _V + "modeling_instancevg.py",
        "no_target_logits=-nt_logits[:, 0],",
        "no_target_logits=nt_logits[:, 0],",
        "Sec. 3.5: no-target logit sign inverted",
    ),
    Mutation(
        "instancevg-mask-threshold",
        _V + "image_processing_instancevg.py",
        "instance_masks = _to_size(pred_masks[b].sigmoid() >= mask_threshold, input_size)",
        "instance_masks = _to_size(pred_masks[b].sigmoid() >= 0.5, input_size)",
        "post-processing ignores mask_threshold for instances",
    ),
    Mutation(
        "instancevg-score-weighting",
        _V + "image_processing_instancevg.py",
        "scores = object_prob[b] * target_prob[b] if score_weighted else object_prob[b]",
        "scores = object_prob[b]",
        "Sec. 3.5: query scores not weighted by the target probability",
    ),
    Mutation(
        "instancevg-first-layer-masks",
        _V + "modeling_instancevg.py",
        "instance_mask_logits(outputs.decoder_states[-1], outputs.global_features, size)",
        "instance_mask_logits(outputs.decoder_states[0], outputs.global_features, size)",
        "Sec. 3.3: instance masks from the first decoder layer",
    ),
    Mutation(
        "instancevg-giou-cost-sign",
        _V + "criterion.py",
        "cost = cost + self.cost_giou * -giou",
        "cost = cost + self.cost_giou * giou",
        "point-guided matcher: GIoU cost sign inverted",
    ),
    Mutation(
        "instancevg-no-object-weight",
        _V + "criterion.py",
        "weight = torch.tensor([1.0, self.no_object_weight], device=device, dtype=class_logits.dtype)",
        "weight = torch.tensor([self.no_object_weight, 1.0], device=device, dtype=class_logits.dtype)",
        "L_detr: no-object weight on the object class",
    ),
    Mutation(
        "instancevg-exist-label",
        _V + "criterion.py",
        "is_empty = torch.tensor([len(m) == 0 for m in targets.masks], dtype=torch.long, device=device)",
        "is_empty = torch.tensor([len(m) > 0 for m in targets.masks], dtype=torch.long, device=device)",
        "L_exist: no-target label inverted",
    ),
    Mutation(
        "instancevg-t2i-no-position",
        _V + "instance_query_generator.py",
        "image_tokens + image_pos,",
        "image_tokens,",
        "eq. 1: T2I cross-attention keys without positions",
    ),
    Mutation(
        "instancevg-t2i-query-no-position",
        _V + "instance_query_generator.py",
        "x + query_pos,\n            image_tokens + image_pos,",
        "x,\n            image_tokens + image_pos,",
        "eq. 1: T2I cross-attention queries without the filtered tokens as position embeddings",
    ),
    Mutation(
        "instancevg-text-filter-padding",
        _V + "instance_query_generator.py",
        "masked = text_features * valid_tokens[..., None].to(text_features.dtype)",
        "masked = text_features",
        "Algorithm 1: padded text tokens are not zeroed before selection",
    ),
    Mutation(
        "instancevg-dps-no-sigmoid",
        _V + "instance_query_generator.py",
        "scores = minimap.detach().float().flatten(1).sigmoid()",
        "scores = minimap.detach().float().flatten(1)",
        "Algorithm 2: the selector ranks M_s instead of sigmoid(M_s)",
    ),
    Mutation(
        "instancevg-dps-diagonal",
        _V + "instance_query_generator.py",
        "diag = math.sqrt(height**2 + width**2) if",
        "diag = float(height + width) if",
        "Algorithm 2: distance normalised by h + w instead of the grid diagonal",
    ),
    Mutation(
        "instancevg-reference-no-sigmoid",
        _V + "point_prior_decoder.py",
        "reference = self.reference_points(query_pos).sigmoid()",
        "reference = self.reference_points(query_pos)",
        "Sec. 3.2.2: learned reference offset without its sigmoid",
    ),
    Mutation(
        "instancevg-decoder-query-no-position",
        _V + "point_prior_decoder.py",
        "x + query_pos,\n            reference_points,",
        "x,\n            reference_points,",
        "eq. 4: deformable cross-attention queries without Linear(P_r)",
    ),
    Mutation(
        "instancevg-point-cost-size",
        _V + "criterion.py",
        "torch.cdist(points, target_boxes[:, :2], p=1)",
        "torch.cdist(points, target_boxes[:, 2:], p=1)",
        "eq. 5: point cost against the box size instead of its centre",
    ),
    Mutation(
        "instancevg-aux-weighting",
        _V + "criterion.py",
        'self.aux_weights = (1.0, 1.0, 1.0) if aux_loss_weighting == "unweighted" else self.last_weights',
        'self.aux_weights = self.last_weights if aux_loss_weighting == "unweighted" else (1.0, 1.0, 1.0)',
        "L_detr: earlier decoder layers weighted 1/5/2 in the released 'unweighted' setting",
    ),
    Mutation(
        "instancevg-detr-loss-weight",
        _V + "criterion.py",
        'terms["loss_det"] = self.detr_loss_weight * detr',
        'terms["loss_det"] = detr',
        "eq. 6: L_detr without lambda_detr",
    ),
    Mutation(
        "instancevg-minimap-loss-weight",
        _V + "criterion.py",
        'terms["loss_minimap"] = self.minimap_loss_weight * (',
        'terms["loss_minimap"] = (',
        "Fig. 4: minimap supervision without its weight 0.1",
    ),
    Mutation(
        "instancevg-negative-mask-weight",
        _V + "criterion.py",
        'out["loss_instance_negative"] = self.negative_mask_weight * (',
        'out["loss_instance_negative"] = (',
        "eq. 7: unmatched-query masks without lambda_neg",
    ),
    Mutation(
        "instancevg-no-target-loss-weight",
        _V + "criterion.py",
        'terms["loss_no_target"] = self.no_target_loss_weight * _weighted_ce(',
        'terms["loss_no_target"] = _weighted_ce(',
        "eq. 6: L_exist without lambda_exist",
    ),
    Mutation(
        "instancevg-no-target-class-weights",
        _V + "criterion.py",
        "weight = torch.tensor(self.no_target_class_weights, device",
        "weight = torch.tensor(self.no_target_class_weights[::-1], device",
        "L_exist: (target, no-target) class weights (0.9, 1.1) swapped",
    ),
    Mutation(
        "instancevg-global-mask-threshold",
        _V + "image_processing_instancevg.py",
        "global_mask = _to_size(semantic[b][None].sigmoid() >= mask_threshold, input_size)[0]",
        "global_mask = _to_size(semantic[b][None].sigmoid() >= 0.5, input_size)[0]",
        "post-processing ignores mask_threshold for the global mask",
    ),
    Mutation(
        "instancevg-mask-threshold-strict",
        _V + "image_processing_instancevg.py",
        "pred_masks[b].sigmoid() >= mask_threshold",
        "pred_masks[b].sigmoid() > mask_threshold",
        "Sec. 3.5: a pixel at exactly thr_m is background (the released code keeps it, >=)",
    ),
    Mutation(
        "instancevg-object-class-index",
        _V + "image_processing_instancevg.py",
        "object_prob = outputs.pred_class_logits.softmax(-1)[..., 0]",
        "object_prob = outputs.pred_class_logits.softmax(-1)[..., 1]",
        "Sec. 3.5: query score reads the no-object probability",
    ),
]

# ---------------------------------------------------------------------------------------------------------------
# ReLA (GRES, CVPR 2023)
# ---------------------------------------------------------------------------------------------------------------

_R = "models/rela/"
RELA = [
    IMAGE_MEAN,
    IMAGE_STD,
    GATE_SIGN,
    PWAM_PRODUCT,
    NO_TARGET_DECISION,
    Mutation(
        "rela-pwam-gate-stages",
        _R + "modeling_rela.py",
        "gate_stages=config.pwam_gate_stages",
        "gate_stages=(0, 1, 2, 3)",
        "Sec. 3.1 / released code: a language gate after the last Swin stage too",
    ),
    Mutation(
        "rela-pil-resize-filter",
        _R + "image_processing_rela.py",
        "pil.resize((size[1], size[0]), PIL.Image.BILINEAR)",
        "pil.resize((size[1], size[0]), PIL.Image.BICUBIC)",
        "processor: bicubic instead of the released code's bilinear PIL resize",
    ),
    Mutation(
        "rela-ria-mask-inverted",
        _R + "region_decoder.py",
        "blocked = resized.sigmoid().flatten(2) < 0.5",
        "blocked = resized.sigmoid().flatten(2) >= 0.5",
        "Sec. 3.2 RIA: a region attends outside its previous mask instead of inside",
    ),
    Mutation(
        "rela-ria-mask-fully-blocked",
        _R + "region_decoder.py",
        "blocked = blocked & ~blocked.all(dim=-1, keepdim=True)",
        "blocked = blocked",
        "Sec. 3.2 RIA: a region with an empty mask stays blocked everywhere (NaN attention)",
    ),
    Mutation(
        "rela-ria-mask-unused",
        _R + "region_decoder.py",
        "attn_mask=attention_mask,",
        "attn_mask=None,",
        "Sec. 3.2 RIA: region-image attention ignores the region masks",
    ),
    Mutation(
        "rela-ria-mask-first-step",
        _R + "region_decoder.py",
        "mask = region_attention_mask(prediction.region_mask_logits, sizes[level], self.num_heads)",
        "mask = region_attention_mask(predictions[0].region_mask_logits, sizes[level], self.num_heads)",
        "Sec. 3.2 RIA: every layer masks with the learned queries' masks instead of the previous layer's",
    ),
    Mutation(
        "rela-ria-key-no-position",
        _R + "region_decoder.py",
        "queries + query_pos,\n            image_features + image_pos,",
        "queries + query_pos,\n            image_features,",
        "Sec. 3.2 RIA: image keys without their sine position embedding",
    ),
    Mutation(
        "rela-ria-query-no-position",
        _R + "region_decoder.py",
        "queries + query_pos,\n            image_features + image_pos,",
        "queries,\n            image_features + image_pos,",
        "Sec. 3.2 RIA: region queries without their learned position embedding",
    ),
    Mutation(
        "rela-level-embed-dropped",
        _R + "region_decoder.py",
        "sources.append(feature.flatten(2).transpose(1, 2) + self.level_embed.weight[level])",
        "sources.append(feature.flatten(2).transpose(1, 2))",
        "Sec. 3.2: image features without their level embedding",
    ),
    Mutation(
        "rela-level-order",
        _R + "region_decoder.py",
        "level = index % NUM_LEVELS",
        "level = NUM_LEVELS - 1 - index % NUM_LEVELS",
        "Sec. 3.2: layers cycle from stride 8 to 32 instead of 32 to 8",
    ),
    Mutation(
        "rela-region-self-attention-no-position",
        _R + "region_decoder.py",
        "anchor = queries + query_pos",
        "anchor = queries",
        "Sec. 3.2 RLA: region-region attention without the query position embedding",
    ),
    Mutation(
        "rela-rla-gate-no-sigmoid",
        _R + "region_decoder.py",
        "update = self.norm(queries + attended) * torch.sigmoid(self.language_weight)",
        "update = self.norm(queries + attended) * self.language_weight",
        "Sec. 3.2 RLA: the language weight w used raw instead of sigmoid(w)",
    ),
    Mutation(
        "rela-rla-weight-ignored",
        _R + "region_decoder.py",
        "return queries + update * self.rla_weight",
        "return queries + update",
        "Sec. 3.2 RLA: the language update without rla_weight (0.1)",
    ),
    Mutation(
        "rela-rla-residual-dropped",
        _R + "region_decoder.py",
        "update = self.norm(queries + attended) *",
        "update = self.norm(attended) *",
        "Sec. 3.2 RLA: LN(Attn) instead of LN(x + Attn)",
    ),
    Mutation(
        "rela-rla-language-not-projected",
        _R + "region_decoder.py",
        "words = self.language_projection(text_features)",
        "words = text_features[..., : queries.shape[-1]]",
        "Sec. 3.2 RLA: words attended without the projection W_l",
    ),
    Mutation(
        "rela-rla-every-layer",
        _R + "region_decoder.py",
        "self.language_attention if index == 0 else None,",
        "self.language_attention,",
        "Sec. 3.2 RLA: region-language attention in every layer instead of the first",
    ),
    Mutation(
        "rela-rla-last-layer",
        _R + "region_decoder.py",
        "self.language_attention if index == 0 else None,",
        "self.language_attention if index == len(self.layers) - 1 else None,",
        "Fig. 3 vs released code: region-language attention after the last layer (the paper's figure)",
    ),
    Mutation(
        "rela-heads-no-norm",
        _R + "region_decoder.py",
        "regions = self.decoder_norm(queries)",
        "regions = queries",
        "Sec. 3.2: heads read the region features without the decoder LayerNorm",
    ),
    Mutation(
        "rela-minimap-softmax",
        _R + "region_decoder.py",
        'target_embed = torch.einsum("bqa,bqc->bac", minimap, region_embed)',
        'target_embed = torch.einsum("bqa,bqc->bac", minimap.softmax(-1), region_embed)',
        "Sec. 3.2: the minimap weights the region embeddings after a softmax (the code uses raw logits)",
    ),
    Mutation(
        "rela-no-target-max-pool",
        _R + "region_decoder.py",
        "no_target = self.no_target_embed(regions).mean(dim=1)",
        "no_target = self.no_target_embed(regions).amax(dim=1)",
        "Sec. 3.2: the no-target head max-pools the regions instead of averaging",
    ),
    Mutation(
        "rela-semantic-one-class",
        _R + "modeling_rela.py",
        "semantic_mask_logits=masks[:, 1] - masks[:, 0],",
        "semantic_mask_logits=masks[:, 1],",
        "Sec. 3.2: the target logit is not the target-minus-background difference",
    ),
    Mutation(
        "rela-no-target-sign",
        _R + "modeling_rela.py",
        "no_target_logits=no_target[:, 1] - no_target[:, 0],",
        "no_target_logits=no_target[:, 0] - no_target[:, 1],",
        "Sec. 3.2: no-target logit sign inverted",
    ),
    Mutation(
        "rela-class-weights-swapped",
        _R + "criterion.py",
        'self.register_buffer("class_weights", torch.tensor(class_weights), persistent=False)',
        'self.register_buffer("class_weights", torch.tensor(class_weights[::-1]), persistent=False)',
        "Sec. 3.3: class weights (0.9, 1.1) swapped",
    ),
    Mutation(
        "rela-lambda-minimap",
        _R + "criterion.py",
        '+ self.lambda_minimap * loss_dict["loss_minimap"]',
        '+ self.lambda_no_target * loss_dict["loss_minimap"]',
        "Sec. 3.3: the minimap term weighted by lambda_no_target",
    ),
    Mutation(
        "rela-lambda-mask-outer",
        _R + "criterion.py",
        'loss = self.lambda_mask * (\n            loss_dict["loss_mask"]\n            + self.lambda_minimap',
        'loss = (\n            self.lambda_mask * loss_dict["loss_mask"]\n            + self.lambda_minimap',
        "Sec. 3.3: lambda_mask weights the mask term only instead of the whole sum",
    ),
    Mutation(
        "rela-minimap-target-rounded",
        _R + "criterion.py",
        "return union.long(), minimap.flatten(1).long(), empty",
        "return union.long(), minimap.flatten(1).round().long(), empty",
        "Sec. 3.3: a minimap cell is foreground when most sampled pixels are (the code: all of them)",
    ),
    Mutation(
        "rela-no-target-label",
        _R + "criterion.py",
        "empty = (~union.flatten(1).any(dim=1)).long()",
        "empty = union.flatten(1).any(dim=1).long()",
        "Sec. 3.3: no-target label inverted",
    ),
    Mutation(
        "rela-loss-upsample-corners",
        _R + "criterion.py",
        'target_mask_logits, size=union.shape[-2:], mode="bilinear", align_corners=False',
        'target_mask_logits, size=union.shape[-2:], mode="bilinear", align_corners=True',
        "Sec. 3.3: mask logits upsampled with aligned corners in the loss",
    ),
    Mutation(
        "rela-mask-threshold",
        _R + "image_processing_rela.py",
        "probabilities > mask_threshold, no_target_prob, no_target_threshold, components",
        "probabilities > 0.5, no_target_prob, no_target_threshold, components",
        "post-processing ignores mask_threshold",
    ),
    Mutation(
        "rela-no-target-threshold",
        _R + "image_processing_rela.py",
        "probabilities > mask_threshold, no_target_prob, no_target_threshold, components",
        "probabilities > mask_threshold, no_target_prob, 0.5, components",
        "post-processing ignores no_target_threshold",
    ),
    Mutation(
        "rela-instance-score",
        _R + "image_processing_rela.py",
        "score: float = 1.0 - no_target_prob",
        "score: float = no_target_prob",
        "post-processing: components scored with the no-target probability",
    ),
    Mutation(
        "rela-upsample-direct",
        _R + "image_processing_rela.py",
        "probabilities = upsample_logits(semantic[b], input_size, size).sigmoid()",
        "probabilities = upsample_logits(semantic[b], size, size).sigmoid()",
        "post-processing: logits resized straight to the image size, not through the input size",
    ),
    Mutation(
        "rela-components-4-connected",
        "modeling/connected_components.py",
        "structure=_EIGHT_CONNECTED)",
        "structure=None)",
        "post-processing: instances are 4-connected components instead of 8-connected",
    ),
]

MODELS: dict[str, list[Mutation]] = {
    "instalign": INSTALIGN,
    "instancevg": INSTANCEVG,
    "metris": METRIS,
    "presence_plurality": PRESENCE,
    "rela": RELA,
}

# the model's folder first (its paper-wiring tests first, so that -x stops early), then the shared blocks' tests
_SWIN = ["tests/modeling/test_language_aware_swin.py"]
TESTS: dict[str, list[str]] = {
    model: [f"tests/models/{model}/test_paper_wiring_{model}.py", f"tests/models/{model}"]
    + (_SWIN if model in ("metris", "presence_plurality", "rela") else [])
    for model in MODELS
}


def apply(source: str, mutation: Mutation) -> str:
    """``source`` with the mutation applied; raises ``ValueError`` unless the snippet occurs exactly once."""
    count = source.count(mutation.original)
    if count != 1:
        raise ValueError(
            f"{mutation.id}: snippet found {count} times in src/refseg/{mutation.file} (expected once): "
            f"{mutation.original!r}"
        )
    return source.replace(mutation.original, mutation.mutated)


def check_all(mutations: dict[str, list[Mutation]], src: Path) -> list[str]:
    """Messages of every mutation whose snippet does not apply to ``src`` (empty: all apply)."""
    problems = []
    for model_mutations in mutations.values():
        for mutation in model_mutations:
            try:
                apply((src / "refseg" / mutation.file).read_text(), mutation)
            except (ValueError, FileNotFoundError) as error:
                problems.append(str(error))
    return problems


# whole-pipeline runs (training, benchmarks, evaluation scripts, checkpoint conversion) that test no equation
IGNORED = ("*test_train_*", "*test_benchmark_*", "*test_evaluate_*", "*test_convert*")


def _preload() -> None:
    """Import the heavy libraries once; every test run is a fork of this process, so only refseg and the tests
    are imported per mutation (the scratch copy of refseg is imported fresh in each child)."""
    import importlib

    for name in (
        "torch",
        "numpy",
        "scipy.optimize",
        "PIL.Image",
        "pytest",
        "transformers",
        "safetensors.torch",
    ):
        importlib.import_module(name)
    import transformers

    for name in ("PreTrainedModel", "BertModel", "RobertaModel", "SwinModel", "BertTokenizer"):
        getattr(transformers, name, None)


def run_tests(root: Path, src: Path, tests: list[str], timeout: float) -> tuple[str, str, float]:
    """Run pytest on ``tests`` of ``root`` importing refseg from ``src``, in a forked child of this process:
    (result, first failing test, seconds)."""
    import pytest

    existing = [t for t in dict.fromkeys(tests) if (root / t).exists()]
    args = ["-x", "-q", "-p", "no:cacheprovider", "-m", "not slow"]
    args += [f"--ignore-glob={pattern}" for pattern in IGNORED] + existing
    log = src.parent / "pytest.log"
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 3
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.chdir(root)
            os.environ["PYTHONPATH"] = str(src)  # for subprocesses the tests start
            sys.path[:0] = [str(src), str(root)]  # refseg from the copy; `tests.` helpers from the root
            import refseg

            if not refseg.__file__.startswith(str(src)):
                print(f"refseg imported from {refseg.__file__}, not from the scratch copy", flush=True)
            else:
                code = int(pytest.main(args))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > timeout:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return "timeout", "", time.monotonic() - start
        time.sleep(0.2)
    seconds = time.monotonic() - start
    returncode = os.waitstatus_to_exitcode(status)
    output = log.read_text(errors="replace")
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, flags=re.M)
    if returncode == 0:
        return "survived", "", seconds
    if returncode == 1:
        return "caught", failed[0] if failed else "", seconds
    return "error", (failed[0] if failed else output[-2000:]), seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", action="append", choices=sorted(MODELS), help="models to run (default: all)"
    )
    parser.add_argument("--only", action="append", help="mutation ids to run (default: all of the model)")
    parser.add_argument("--check", action="store_true", help="only check that every snippet applies")
    parser.add_argument("--list", action="store_true", help="print the mutations and exit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per test run")
    parser.add_argument(
        "--ref", help="run on the source and tests of this commit (default: the working tree)"
    )
    args = parser.parse_args()
    models = args.model or sorted(MODELS)
    selected = {m: [mut for mut in MODELS[m] if not args.only or mut.id in args.only] for m in models}
    if args.list:
        for model, mutations in selected.items():
            for mutation in mutations:
                print(f"{model:20s} {mutation.id:38s} {mutation.file}: {mutation.description}")
        return 0
    with tempfile.TemporaryDirectory(prefix="refseg-mutants-") as scratch:
        root = ROOT
        if args.ref:  # source and tests of a commit, in a detached worktree removed afterwards
            root = Path(scratch) / "tree"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--quiet", "--detach", str(root), args.ref],
                check=True,
            )
        try:
            return _run(args, selected, root, Path(scratch))
        finally:
            if args.ref:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(root)], check=False
                )


def _run(args: argparse.Namespace, selected: dict[str, list[Mutation]], root: Path, scratch: Path) -> int:
    problems = check_all(selected, root / "src")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    if args.check:
        print(f"all {sum(map(len, selected.values()))} mutations apply", file=sys.stderr)
        return 0
    src = scratch / "src"
    shutil.copytree(root / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _preload()
    report: dict[str, dict] = {}
    for model, mutations in selected.items():
        baseline, failed, seconds = run_tests(root, src, TESTS[model], args.timeout)
        print(f"[{model}] unmutated: {baseline} {failed} ({seconds:.0f} s)", file=sys.stderr)
        if baseline != "survived":
            report[model] = {"error": f"the unmutated tests do not pass: {baseline} {failed}"}
            continue
        rows = []
        for mutation in mutations:
            path = src / "refseg" / mutation.file
            original = path.read_text()
            path.write_text(apply(original, mutation))
            try:
                result, failed, seconds = run_tests(root, src, TESTS[model], args.timeout)
            finally:
                path.write_text(original)
            print(f"[{model}] {mutation.id}: {result} {failed} ({seconds:.0f} s)", file=sys.stderr)
            rows.append(
                {
                    "id": mutation.id,
                    "file": f"src/refseg/{mutation.file}",
                    "description": mutation.description,
                    "result": result,
                    "failed_test": failed,
                    "seconds": round(seconds, 1),
                }
            )
        report[model] = {
            "caught": sum(r["result"] == "caught" for r in rows),
            "total": len(rows),
            "survived": [r["id"] for r in rows if r["result"] == "survived"],
            # a run that timed out proves nothing (a slow machine, not a failing test): rerun with --timeout
            "timeouts": [r["id"] for r in rows if r["result"] == "timeout"],
            "errors": [r["id"] for r in rows if r["result"] == "error"],
            "tests": TESTS[model],
            "ignored": list(IGNORED),
            "mutations": rows,
        }
    print(json.dumps({"ref": args.ref or "working tree", "models": report}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
