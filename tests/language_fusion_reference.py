"""Independent re-computation of LAVT's pixel-word attention and language gate (LAVT Sec. 3.2-3.3) for the
paper-wiring tests of the models built on ``refseg.modeling.language_aware_swin`` (METRIS, presence &
plurality): each model's test runs its own backbone, captures what every stage computed, and compares it
with these formulas written out from the paper.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F


def open_language_gates(backbone, seed: int = 0) -> None:
    """Draw every PWAM and language-gate matrix from ``N(0, 1 / fan_in)``: at initialisation the gates are closed
    (``W_2 = 0``) and the 0.02-std projections make ``F_m`` tiny, so a wrongly wired gate would not show."""
    generator = torch.Generator().manual_seed(seed)
    modules = list(backbone.pixel_word_attention) + list(backbone.language_gates.values())
    with torch.no_grad():
        for module in modules:
            for linear in module.modules():
                if isinstance(linear, torch.nn.Linear):
                    fan_in = linear.weight.shape[1]
                    linear.weight.copy_(
                        torch.randn(linear.weight.shape, generator=generator) / math.sqrt(fan_in)
                    )


def _instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``InstanceNorm1d`` over the pixels of ``(N, C)`` (biased variance, no affine)."""
    mean = x.mean(dim=0, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=0, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def _linear(layer, x: torch.Tensor) -> torch.Tensor:
    return x @ layer.weight.T + (0 if layer.bias is None else layer.bias)


def pixel_word_attention_reference(pwam, visual: torch.Tensor, text: torch.Tensor, mask: torch.Tensor):
    """LAVT eq. 1-3 for one sample with one head: ``visual`` (N, C), ``text`` (T, C_t), ``mask`` (T,) -> ``F_m``.

    ``V_i = GELU(W_i V)``; ``A = softmax(IN(W_q V) (W_k L)^T / sqrt(C))`` over the valid words;
    ``G = IN(W_w (A W_v L))``; ``F_m = GELU(W_m (V_i * G))``.
    """
    assert pwam.num_heads == 1
    valid = mask.bool()
    words_k = _linear(pwam.key_projection, text)[valid]
    words_v = _linear(pwam.value_projection, text)[valid]
    query = _instance_norm(_linear(pwam.query_projection, visual))
    attention = torch.softmax(query @ words_k.T / math.sqrt(visual.shape[-1]), dim=-1)
    language = _instance_norm(_linear(pwam.output_projection, attention @ words_v))
    pixels = F.gelu(_linear(pwam.visual_projection, visual))
    return F.gelu(_linear(pwam.multimodal_projection, pixels * language))


def language_gate_reference(gate, multimodal: torch.Tensor) -> torch.Tensor:
    """LAVT Sec. 3.3: ``tanh(W_2 ReLU(W_1 F_m))``."""
    return torch.tanh(torch.relu(multimodal @ gate.fc1.weight.T) @ gate.fc2.weight.T)


@contextlib.contextmanager
def capture_language_fusion(backbone):
    """Record, per Swin stage, the visual stream ``V`` after its blocks, the words PWAM read (features, mask),
    ``F_m`` and, where a downsampling follows, the stream that enters it."""
    records: dict[int, dict[str, torch.Tensor]] = {}
    handles = []
    stages = backbone.model.swin.encoder.layers
    for index, stage in enumerate(stages):
        record = records.setdefault(index, {})

        def after_blocks(module, args, output, record=record):
            record["visual"] = output[0].detach().clone()

        def fusion(module, args, output, record=record):
            record["text"], record["mask"] = args[1].detach(), args[2].detach()
            record["fused"] = output.detach().clone()

        def before_downsample(module, args, record=record):
            record["gated"] = args[0].detach().clone()

        handles.append(stage.blocks[-1].register_forward_hook(after_blocks))
        handles.append(backbone.pixel_word_attention[index].register_forward_hook(fusion))
        if stage.downsample is not None:
            handles.append(stage.downsample.register_forward_pre_hook(before_downsample))
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def check_language_fusion(backbone, records, text_features: torch.Tensor, text_mask: torch.Tensor) -> int:
    """Assert every stage's ``F_m`` (LAVT eq. 1-3) and gated stream (Sec. 3.3) against the references;
    returns the number of gated stages checked."""
    gated_checked = 0
    for index, record in records.items():
        torch.testing.assert_close(record["text"], text_features)
        assert torch.equal(record["mask"].bool(), text_mask.bool())
        pwam = backbone.pixel_word_attention[index]
        for b in range(text_features.shape[0]):
            expected = pixel_word_attention_reference(
                pwam, record["visual"][b], text_features[b], text_mask[b]
            )
            torch.testing.assert_close(record["fused"][b], expected, rtol=1e-4, atol=1e-4)
        gate = backbone.language_gates[str(index)] if str(index) in backbone.language_gates else None
        if "gated" in record:
            fused, visual = record["fused"], record["visual"]
            expected = visual if gate is None else visual + language_gate_reference(gate, fused) * fused
            torch.testing.assert_close(record["gated"], expected, rtol=1e-4, atol=1e-5)
            if gate is not None:  # the gate's contribution is large enough for a wrong wiring to show
                assert float((expected - visual).abs().amax()) > 1e-3
                gated_checked += 1
    return gated_checked
