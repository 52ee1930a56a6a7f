"""Multi-scale deformable attention (Deformable DETR, arXiv 2010.04159, eq. 3).

``multi_scale_deformable_attention`` runs the compiled ``refseg::ms_deform_attn_forward`` custom op (C++ CPU
kernel built on first use, optional CUDA extension) and falls back to
``reference_multi_scale_deformable_attention`` (``grid_sample``) with a one-time warning when it cannot.
``implementation(device)`` says which one runs and why. ``REFSEG_DISABLE_KERNELS=1`` forces the reference,
as does the ``use_reference_implementation()`` context manager (for ONNX export).
"""

from __future__ import annotations

from .ops import implementation, multi_scale_deformable_attention, use_reference_implementation
from .reference import reference_multi_scale_deformable_attention

__all__ = ["implementation", "multi_scale_deformable_attention", "reference_multi_scale_deformable_attention"]
__all__ += ["use_reference_implementation"]
