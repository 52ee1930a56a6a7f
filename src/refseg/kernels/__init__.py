"""Multi-scale deformable attention: compiled custom op with a pure-PyTorch reference fallback."""

from __future__ import annotations

from .reference import reference_multi_scale_deformable_attention


def multi_scale_deformable_attention(*args, **kwargs):  # temporary: compiled op lands next
    return reference_multi_scale_deformable_attention(*args, **kwargs)


__all__ = ["multi_scale_deformable_attention", "reference_multi_scale_deformable_attention"]
