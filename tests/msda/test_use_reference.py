"""``use_reference_implementation()``: inside it the compiled op is never asked for; blocks nest."""

import torch

from refseg.kernels import ops, use_reference_implementation
from refseg.kernels.reference import reference_multi_scale_deformable_attention


def _inputs():
    g = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[4, 4], [2, 2]])
    start = torch.tensor([0, 16])
    value = torch.randn(2, 20, 2, 4, generator=g)
    locations = torch.rand(2, 3, 2, 2, 2, 2, generator=g)
    weights = torch.rand(2, 3, 2, 2, 2, generator=g)
    return value, shapes, start, locations, weights


def test_forced_reference_skips_the_compiled_op(monkeypatch):
    asked = []

    def compiled_wanted(device_type):
        asked.append(device_type)
        return False  # then the reference runs, as a fallback

    monkeypatch.setattr(ops, "_use_compiled", compiled_wanted)
    args = _inputs()
    expected = reference_multi_scale_deformable_attention(*args)
    with use_reference_implementation():
        with use_reference_implementation():
            out = ops.multi_scale_deformable_attention(*args)
        out_outer = ops.multi_scale_deformable_attention(*args)
    assert asked == []  # never consulted inside the blocks
    assert torch.equal(out, expected) and torch.equal(out_outer, expected)
    ops.multi_scale_deformable_attention(*args)
    assert asked == ["cpu"]  # consulted again after the outermost block
    assert ops._FORCED["reference"] == 0


def test_symbolic_batch_check_keeps_its_meaning():
    value, shapes, start, locations, weights = _inputs()
    import pytest

    big = (
        value.repeat(3, 1, 1, 1),
        shapes,
        start,
        locations.repeat(3, 1, 1, 1, 1, 1),
        weights.repeat(3, 1, 1, 1, 1),
    )
    ops.multi_scale_deformable_attention(*big, im2col_step=64)  # batch 6 <= step: fine
    ops.multi_scale_deformable_attention(*big, im2col_step=3)  # 6 % 3 == 0
    with pytest.raises(ValueError, match=r"batch \(6\) must be divisible by im2col_step \(4\)"):
        ops.multi_scale_deformable_attention(*big, im2col_step=4)
