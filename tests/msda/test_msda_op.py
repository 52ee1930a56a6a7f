"""The compiled refseg::ms_deform_attn_* ops on CPU: registration, gradients, parity, determinism."""

import os
import subprocess
import sys

import pytest
import torch

from refseg.kernels import (
    implementation,
    multi_scale_deformable_attention,
    reference_multi_scale_deformable_attention,
)
from tests.msda._msda_inputs import make_inputs

pytestmark = pytest.mark.skipif(implementation("cpu") != "compiled", reason=implementation("cpu"))

SHAPES = [(6, 4), (3, 5), (1, 1)]  # non-square levels and a 1x1 level


def _op():
    return torch.ops.refseg


def test_implementation_reports_compiled_on_cpu():
    assert implementation("cpu") == "compiled"
    assert implementation(torch.device("meta")).startswith("reference: ")


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck_forward_and_backward(requires_grad):
    value, ss, lsi, loc, attn = make_inputs(SHAPES, channels=4)
    if requires_grad:
        value.requires_grad_()
        loc.requires_grad_()
        attn.requires_grad_()
    torch.library.opcheck(_op().ms_deform_attn_forward.default, (value, ss, lsi, loc, attn, 64))
    grad = torch.randn(2, 5, 2 * 4)
    torch.library.opcheck(
        _op().ms_deform_attn_backward.default,
        (value.detach(), ss, lsi, loc.detach(), attn.detach(), grad, 64),
    )


@pytest.mark.parametrize("channels", [2, 30, 32, 64, 71])
def test_gradcheck_float64(channels):
    value, ss, lsi, loc, attn = make_inputs(
        SHAPES, batch=1, queries=3, channels=channels, dtype=torch.float64
    )
    inputs = (value.requires_grad_(), ss, lsi, loc.requires_grad_(), attn.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda v, s, i, lc, a: multi_scale_deformable_attention(v, s, i, lc, a), inputs, eps=1e-6, atol=1e-6
    )


def _forward_backward(fn, value, ss, lsi, loc, attn, grad_seed=1):
    value, loc, attn = (t.detach().clone().requires_grad_() for t in (value, loc, attn))
    out = fn(value, ss, lsi, loc, attn)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64)
    out.backward(grad.to(out.dtype))
    return out, value.grad, loc.grad, attn.grad


def _transformers(value, ss, lsi, loc, attn):
    from transformers.models.deformable_detr.modeling_deformable_detr import MultiScaleDeformableAttention

    return MultiScaleDeformableAttention()(value, ss, [tuple(s) for s in ss.tolist()], lsi, loc, attn, 64)


@pytest.mark.parametrize("channels", [32, 7])
def test_float32_parity_with_reference_and_transformers(channels):
    inputs = make_inputs(SHAPES, batch=3, queries=11, heads=4, channels=channels, points=4)
    ours = _forward_backward(multi_scale_deformable_attention, *inputs)
    exact = _forward_backward(
        reference_multi_scale_deformable_attention,
        *(t.double() if t.is_floating_point() else t for t in inputs),
    )
    theirs = _forward_backward(_transformers, *inputs)
    for got, ref, hf in zip(ours, exact, theirs):
        assert got.dtype == torch.float32
        scale = max(ref.abs().max().item(), 1.0)
        torch.testing.assert_close(got.double(), ref, atol=1e-5 * scale, rtol=0)
        torch.testing.assert_close(got, hf, atol=1e-5 * scale, rtol=0)


@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 5e-2), (torch.float16, 1e-2)])
def test_low_precision_within_tolerance(dtype, tol):
    """bf16/fp16 inputs, float32 accumulation: forward within tol * max(|ref|, 1) of the float64 result."""
    inputs = make_inputs(SHAPES, batch=2, queries=9, heads=2, channels=32, points=4, dtype=dtype)
    ours = _forward_backward(multi_scale_deformable_attention, *inputs)
    exact = _forward_backward(
        reference_multi_scale_deformable_attention,
        *(t.double() if t.is_floating_point() else t for t in inputs),
    )
    for got, ref in zip(ours, exact):
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), ref, atol=tol * max(ref.abs().max().item(), 1.0), rtol=0)


def test_zero_queries_and_points_outside():
    value, ss, lsi, loc, attn = make_inputs(SHAPES, queries=0)
    out = multi_scale_deformable_attention(value, ss, lsi, loc, attn)
    assert out.shape == (2, 0, 2 * 8)
    value, ss, lsi, loc, attn = make_inputs(SHAPES)
    far = loc + 3.0  # every point far outside every map
    value.requires_grad_()
    out = multi_scale_deformable_attention(value, ss, lsi, far, attn)
    assert torch.count_nonzero(out) == 0
    out.sum().backward()
    assert torch.count_nonzero(value.grad) == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_values_propagate_like_the_reference(bad):
    """A NaN/inf value token poisons exactly the outputs that sample it (zero padding never reads it)."""
    value, ss, lsi, loc, attn = make_inputs(SHAPES, batch=2, queries=40, heads=2, channels=8, outside=0.3)
    value[0, 3, 1, :] = bad  # level 0, pixel (0, 3), head 1
    value[1, 24, 0, 2] = bad  # level 1, pixel (0, 0), head 0, one channel
    out = multi_scale_deformable_attention(value, ss, lsi, loc, attn)
    ref = reference_multi_scale_deformable_attention(value, ss, lsi, loc, attn)
    assert torch.isfinite(ref).logical_not().any() and torch.isfinite(ref).any()
    assert torch.equal(torch.isnan(out), torch.isnan(ref))
    assert torch.equal(torch.isinf(out), torch.isinf(ref))
    finite = torch.isfinite(ref)
    torch.testing.assert_close(out[finite], ref[finite], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("channels", [32, 7])
def test_generic_path_for_many_samples_per_query_matches_reference(channels):
    """More than 512 samples per query (8 heads x 3 levels x 24 points) take the generic one-sample forward."""
    value, ss, lsi, loc, attn = make_inputs(SHAPES, batch=2, queries=5, heads=8, channels=channels, points=24)
    expected = reference_multi_scale_deformable_attention(value, ss, lsi, loc, attn)
    torch.testing.assert_close(multi_scale_deformable_attention(value, ss, lsi, loc, attn), expected)


def test_non_contiguous_inputs_match_contiguous():
    value, ss, lsi, loc, attn = make_inputs(SHAPES, batch=2, queries=6, heads=2, channels=8)
    value_nc = value.transpose(2, 3).contiguous().transpose(2, 3)  # same values, channels not innermost
    loc_nc = loc.transpose(1, 2).contiguous().transpose(1, 2)
    attn_nc = torch.stack([attn, -attn], -1)[..., 0]  # stride-2 last dim
    assert not (value_nc.is_contiguous() or loc_nc.is_contiguous() or attn_nc.is_contiguous())
    expected = multi_scale_deformable_attention(value, ss, lsi, loc, attn)
    torch.testing.assert_close(multi_scale_deformable_attention(value_nc, ss, lsi, loc_nc, attn_nc), expected)


def test_backward_is_deterministic():
    value, ss, lsi, loc, attn = make_inputs([(16, 16), (8, 8)], batch=2, queries=200, heads=4, channels=32)
    # many queries sample the same pixels, so an atomic scatter would reorder additions between runs
    loc = loc.clamp(0.4, 0.6)
    first = _forward_backward(multi_scale_deformable_attention, value, ss, lsi, loc, attn)
    second = _forward_backward(multi_scale_deformable_attention, value, ss, lsi, loc, attn)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_needs_input_grad_is_honoured():
    value, ss, lsi, loc, attn = make_inputs(SHAPES)
    loc.requires_grad_()
    multi_scale_deformable_attention(value, ss, lsi, loc, attn).sum().backward()
    assert loc.grad is not None and value.grad is None and attn.grad is None


def test_baseline_isa_matches_reference_in_subprocess(tmp_path):
    """The portable (no SIMD extensions) kernel unit gives the same numbers as the dispatched one."""
    code = (
        "import torch\n"
        "from refseg.kernels import multi_scale_deformable_attention as f, ops\n"
        "from tests.msda._msda_inputs import make_inputs\n"
        "x = make_inputs([(6, 4), (3, 5), (1, 1)], channels=32, dtype=torch.float64)\n"
        "out = f(*x)\n"
        "assert ops.cpu_isa() == 'base', ops.cpu_isa()\n"
        "import sys; torch.save(out, sys.argv[1])\n"
    )
    env = dict(os.environ, REFSEG_KERNELS_ISA="base")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    saved = str(tmp_path / "base.pt")
    proc = subprocess.run(
        [sys.executable, "-c", code, saved], cwd=root, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    base = torch.load(saved)
    x = make_inputs(SHAPES, channels=32, dtype=torch.float64)
    torch.testing.assert_close(base, multi_scale_deformable_attention(*x), atol=1e-12, rtol=0)
