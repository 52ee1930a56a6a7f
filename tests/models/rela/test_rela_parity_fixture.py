"""Conversion parity with the ORIGINAL ReLA (henghuiding/ReLA), checked without it.

``tests/fixtures/rela/`` was written by ``scripts/parity/rela_parity.py --write-fixture tests/fixtures/rela/``
(see ``scripts/parity/README.md``): a reduced-size original GRES model (Swin embed 4 with PWAM and gates,
BERT 2 x 16, pixel decoder and ReLA decoder 32 wide, 3 decoder layers, 100 queries, 64x64 images) whose every
tensor is random, stored in the ORIGINAL's key layout (``weights.safetensors``: int8 times a power of two per
tensor, so the values are exact); three inputs (20 / 6 / 12 tokens padded to 20; one box / no target / two
boxes); and what the original code computed from them (``outputs.safetensors``). ``config.json`` holds the
matching ``RelaConfig`` and the differences measured when the fixture was written.

Tolerances: the measured differences (float32 re-association between detectron2/timm-style and transformers
code) were at most 2.2e-5 of each tensor's largest magnitude and 3.5e-7 relative for the loss; the checks
below allow 5x that. The masked-attention decisions have a margin of 4.5e-4 in this fixture (the smallest
``|logit|`` the original thresholded), so a correct port cannot flip one.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch.nn import functional as F

from refseg.kernels import use_reference_implementation
from refseg.modeling.pretrained.rela_keys import FILLED_ENCODER_KEYS
from refseg.models.rela import RelaConfig, RelaForReferringSegmentation
from refseg.models.rela.convert_keys import convert_rela_state_dict
from refseg.models.rela.image_processing_rela import RelaImageProcessor

FIXTURE = Path(__file__).parents[2] / "fixtures" / "rela"
FEATURE_RTOL = 1e-4  # of the reference's largest magnitude; measured <= 2.2e-5
LOSS_RTOL = 2e-6  # measured 3.5e-7


def load_original_weights() -> dict[str, torch.Tensor]:
    """The fixture's state dict in the original's layout, dequantised exactly (int8 * 2**exponent)."""
    with safe_open(FIXTURE / "weights.safetensors", framework="pt") as f:
        exponents = json.loads(f.metadata()["exponents"])
        raw = {k: f.get_tensor(k) for k in f.keys()}
    floating = sorted(k for k, v in raw.items() if v.dtype == torch.int8)
    assert len(floating) == len(exponents)
    state = dict(raw)
    for key, exponent in zip(floating, exponents):
        state[key] = raw[key].float() * 2.0**exponent
    return state


def unpack(packed: torch.Tensor, width: int) -> torch.Tensor:
    return torch.from_numpy(np.unpackbits(packed.numpy(), axis=-1)[..., :width].astype(bool))


def assert_close_to(actual: torch.Tensor, expected: torch.Tensor, rtol: float = FEATURE_RTOL) -> None:
    """``max |actual - expected| <= rtol * max |expected|`` (and equal shapes)."""
    assert actual.shape == expected.shape
    error = (actual - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert error <= rtol * scale, f"max abs diff {error:.3g} > {rtol} x {scale:.3g}"


@pytest.fixture(scope="module")
def run():
    meta = json.loads((FIXTURE / "config.json").read_text())
    with safe_open(FIXTURE / "outputs.safetensors", framework="pt") as f:
        expected = {k: f.get_tensor(k) for k in f.keys()}
    state, unexpected = convert_rela_state_dict(load_original_weights())
    assert unexpected == []
    model = RelaForReferringSegmentation(RelaConfig.from_dict(meta["refseg_config"])).eval()
    missing, extra = model.load_state_dict(state, strict=False)
    assert extra == [] and all(FILLED_ENCODER_KEYS.fullmatch(k) for k in missing), missing
    mean = torch.tensor(meta["pixel_mean"]).view(-1, 1, 1)
    std = torch.tensor(meta["pixel_std"]).view(-1, 1, 1)
    pixel_values = (expected["images"].float() - mean) / std  # GRES.forward's normalisation
    size = pixel_values.shape[-1]
    merged = unpack(expected["merged_masks_packed"], size).float()
    labels = [m[None] if m.any() else m.new_zeros(0, size, size) for m in merged]
    captured = {}
    hook = model.model.register_forward_hook(lambda _m, _i, out: captured.update(encoded=out))
    with torch.no_grad(), use_reference_implementation():  # the original's CPU path: grid_sample MSDA
        out = model(pixel_values, expected["input_ids"], expected["attention_mask"], mask_labels=labels)
    hook.remove()
    return expected, captured["encoded"], out, model


def test_backbone_and_pixel_decoder_match_the_original(run):
    expected, encoded, _, _ = run
    for name, ours in zip(("res2", "res3", "res4", "res5"), encoded.encoder_feature_maps):
        assert_close_to(ours, expected[name])
    for level, ours in enumerate(encoded.multi_scale_features):
        assert_close_to(ours, expected[f"multi_scale_features.{level}"])


def test_decoder_states_and_heads_match_the_original(run):
    expected, _, out, _ = run
    states = torch.stack(out.decoder_hidden_states)[:, :, ::10]  # (L, B, 10, C), as stored
    assert_close_to(states, expected["decoder_states_query_stride_10"])
    assert_close_to(out.minimap_logits, expected["pred_logits"])
    assert_close_to(out.mask_logits, expected["pred_masks"])
    assert_close_to(out.no_target_class_logits, expected["nt_label"])


def test_final_masks_and_no_target_decisions_are_identical(run):
    expected, _, out, _ = run
    size = expected["images"].shape[-1]
    logits = F.interpolate(out.mask_logits, size=(size, size), mode="bilinear", align_corners=False)
    original_mask = unpack(expected["pred_mask_packed"], size)
    # the original's decisions: argmax over the two sigmoids (its evaluator)
    assert torch.equal(logits.sigmoid().argmax(dim=1).bool(), original_mask)
    assert torch.equal(out.no_target_class_logits.sigmoid().argmax(dim=1), expected["pred_nt"])
    assert expected["pred_nt"].tolist() == [0, 1, 0]  # the fixture exercises both decisions
    # refseg's own post-processing gives the same masks and decisions here (no saturated pixels)
    processor = RelaImageProcessor(size={"height": size, "width": size})
    results = processor.post_process_referring_segmentation(out)
    for b, result in enumerate(results):
        assert torch.equal(torch.as_tensor(np.asarray(result["semantic_mask"])).bool(), original_mask[b])
        assert result["no_target"] == bool(expected["pred_nt"][b])


def test_training_loss_matches_the_original(run):
    expected, _, out, _ = run
    assert_close_to(out.loss.reshape(1), expected["loss"], rtol=LOSS_RTOL)
