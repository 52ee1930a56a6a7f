"""The ``refseg::ms_deform_attn_forward`` / ``_backward`` custom ops: loading, fake kernels, autograd.

The schema and CPU kernels live in ``csrc/ms_deform_attn.cpp`` (``TORCH_LIBRARY(refseg, ...)``); an
optional CUDA extension adds ``TORCH_LIBRARY_IMPL(refseg, CUDA, ...)``. Here we load the compiled library on
first use, register the fake (meta) kernels and the autograd formula so ``torch.compile`` and
``torch.export`` see one opaque op, and choose between the compiled op and the pure-PyTorch reference.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import warnings

import torch

from . import build as _build
from .reference import reference_multi_scale_deformable_attention

_LOCK = threading.Lock()
_STATE: dict[str, object] = {"cpu": None, "cuda": None, "isa": None, "library": None, "warned": False}
_FORCED = {"reference": 0}  # depth of nested ``use_reference_implementation`` blocks


def _disabled_reason() -> str | None:
    if os.environ.get("REFSEG_DISABLE_KERNELS", "").strip().lower() not in ("", "0", "false", "no"):
        return "disabled by REFSEG_DISABLE_KERNELS"
    return None


def _register_python_parts() -> None:
    """Fake kernels and autograd for the ops defined by the C++ library (once)."""

    @torch.library.register_fake("refseg::ms_deform_attn_forward")
    def _forward_fake(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step
    ):
        batch, _, heads, channels = value.shape
        return value.new_empty((batch, sampling_locations.shape[1], heads * channels))

    @torch.library.register_fake("refseg::ms_deform_attn_backward")
    def _backward_fake(
        value,
        spatial_shapes,
        level_start_index,
        sampling_locations,
        attention_weights,
        grad_output,
        im2col_step,
    ):
        return (
            torch.empty_like(value, memory_format=torch.contiguous_format),
            torch.empty_like(sampling_locations, memory_format=torch.contiguous_format),
            torch.empty_like(attention_weights, memory_format=torch.contiguous_format),
        )

    def _setup_context(ctx, inputs, output):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step = inputs
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        ctx.im2col_step = im2col_step

    def _backward(ctx, grad_output):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if not (needs[0] or needs[3] or needs[4]):
            return None, None, None, None, None, None
        grad_value, grad_loc, grad_attn = torch.ops.refseg.ms_deform_attn_backward(
            value,
            spatial_shapes,
            level_start_index,
            sampling_locations,
            attention_weights,
            grad_output.contiguous(),
            ctx.im2col_step,
        )
        return (
            grad_value if needs[0] else None,
            None,
            None,
            grad_loc if needs[3] else None,
            grad_attn if needs[4] else None,
            None,
        )

    torch.library.register_autograd("refseg::ms_deform_attn_forward", _backward, setup_context=_setup_context)


def _load_cpu() -> str | None:
    """Build (if needed) and load the C++ library; returns None on success, else the reason."""
    reason = _disabled_reason()
    if reason:
        return reason
    try:
        result = _build.build(verbose=True, retry_failed=False)
        torch.ops.load_library(str(result.library))
        _STATE["library"] = str(result.library)
        try:
            isa_fn = ctypes.CDLL(str(result.library)).refseg_msda_cpu_isa
            isa_fn.restype = ctypes.c_char_p
            _STATE["isa"] = isa_fn().decode()
        except (OSError, AttributeError):  # pragma: no cover - informational only
            _STATE["isa"] = None
        _register_python_parts()
    except Exception as error:  # noqa: BLE001 - any failure falls back to the reference
        return f"the C++ op could not be built or loaded: {str(error).strip() or type(error).__name__}"
    _load_cuda()
    return None


def _load_cuda() -> None:
    """Load the optional CUDA extension if it was built (``refseg kernels build --cuda``)."""
    try:
        from . import cuda_build

        _STATE["cuda"] = cuda_build.load()
    except Exception as error:  # noqa: BLE001
        _STATE["cuda"] = f"the CUDA extension could not be loaded: {error}"


def _cpu_reason() -> str | None:
    with _LOCK:
        if _STATE["cpu"] is None:
            reason = _load_cpu()
            _STATE["cpu"] = reason or "ok"
        return None if _STATE["cpu"] == "ok" else str(_STATE["cpu"])


def unavailable_reason(device: torch.device | str) -> str | None:
    """Why the compiled op cannot run on ``device`` (None when it can). Loads the library on first call."""
    device = torch.device(device)
    disabled = _disabled_reason()
    if disabled:
        return disabled
    cpu = _cpu_reason()
    if cpu is not None:
        return cpu
    if device.type == "cpu":
        return None
    if device.type == "cuda":
        cuda = _STATE["cuda"]
        return None if cuda == "ok" else str(cuda or "the CUDA extension is not built")
    return f"no compiled kernel for device type {device.type!r}"


def implementation(device: torch.device | str = "cpu") -> str:
    """``"compiled"`` when the custom op runs on ``device``, else ``"reference: <reason>"``."""
    reason = unavailable_reason(device)
    return "compiled" if reason is None else f"reference: {reason}"


@torch.compiler.assume_constant_result
def _use_compiled(device_type: str) -> bool:
    reason = unavailable_reason(device_type)
    if reason is not None and not _STATE["warned"]:
        _STATE["warned"] = True
        warnings.warn(
            f"refseg: multi-scale deformable attention runs on the slow pure-PyTorch reference on "
            f"{device_type}: {reason}",
            RuntimeWarning,
            stacklevel=3,
        )
    return reason is None


def _check_inputs(
    value,
    spatial_shapes,
    level_start_index,
    sampling_locations,
    attention_weights,
    im2col_step,
    spatial_shapes_list,
):
    """Metadata-only checks (compile friendly) raising ValueError that name the problem."""
    tensors = {
        "value": value,
        "spatial_shapes": spatial_shapes,
        "level_start_index": level_start_index,
        "sampling_locations": sampling_locations,
        "attention_weights": attention_weights,
    }
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if value.dim() != 4:
        raise ValueError(f"value must be 4-D (N, S, M, D), got shape {tuple(value.shape)}")
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError(
            f"sampling_locations must be 6-D (N, Lq, M, L, P, 2), got shape {tuple(sampling_locations.shape)}"
        )
    if attention_weights.shape != sampling_locations.shape[:-1]:
        raise ValueError(
            f"attention_weights must have shape {tuple(sampling_locations.shape[:-1])} (N, Lq, M, L, P) to match "
            f"sampling_locations, got {tuple(attention_weights.shape)}"
        )
    batch, _, heads, _ = value.shape
    if sampling_locations.shape[0] != batch or sampling_locations.shape[2] != heads:
        raise ValueError(
            f"sampling_locations must be (N={batch}, Lq, M={heads}, L, P, 2) to match value, "
            f"got {tuple(sampling_locations.shape)}"
        )
    levels = sampling_locations.shape[3]
    if spatial_shapes.shape != (levels, 2):
        raise ValueError(f"spatial_shapes must be (L={levels}, 2), got shape {tuple(spatial_shapes.shape)}")
    if level_start_index.shape != (levels,):
        raise ValueError(
            f"level_start_index must be (L={levels},), got shape {tuple(level_start_index.shape)}"
        )
    if spatial_shapes.dtype != torch.int64 or level_start_index.dtype != torch.int64:
        raise ValueError(
            f"spatial_shapes and level_start_index must be int64, got {spatial_shapes.dtype} and {level_start_index.dtype}"
        )
    if value.dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        raise ValueError(f"value must be float32, float64, bfloat16 or float16, got {value.dtype}")
    for name in ("sampling_locations", "attention_weights"):
        if not tensors[name].is_floating_point():
            raise ValueError(f"{name} must be a floating point tensor, got {tensors[name].dtype}")
    if im2col_step <= 0:
        raise ValueError(f"im2col_step must be positive, got {im2col_step}")
    # batch % min(batch, im2col_step) == 0, written so that symbolic shapes (torch.export) can decide it
    if batch > im2col_step and batch % im2col_step != 0:
        raise ValueError(f"batch ({batch}) must be divisible by im2col_step ({im2col_step})")
    if (
        spatial_shapes_list is None
        and spatial_shapes.device.type == "cpu"
        and not torch.compiler.is_compiling()
    ):
        spatial_shapes_list = [tuple(shape) for shape in spatial_shapes.tolist()]
    if spatial_shapes_list is not None:
        if len(spatial_shapes_list) != levels:
            raise ValueError(f"spatial_shapes_list has {len(spatial_shapes_list)} levels, expected {levels}")
        total = sum(int(h) * int(w) for h, w in spatial_shapes_list)
        if total != value.shape[1]:
            raise ValueError(f"value has S={value.shape[1]} positions but spatial_shapes sum to {total}")
    return spatial_shapes_list


def multi_scale_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    im2col_step: int = 64,
    *,
    spatial_shapes_list: list[tuple[int, int]] | None = None,
) -> torch.Tensor:
    """Multi-scale deformable attention (Deformable DETR eq. 3) with the Deformable-DETR layouts.

    ``value (N, S, M, D)``, ``spatial_shapes (L, 2)`` int64 rows ``(H, W)``, ``level_start_index (L,)`` int64,
    ``sampling_locations (N, Lq, M, L, P, 2)`` normalised ``(x, y)``, ``attention_weights (N, Lq, M, L, P)``
    -> ``(N, Lq, M * D)``. Runs the compiled ``refseg::ms_deform_attn_forward`` op where it is available
    (see :func:`implementation`) and the ``grid_sample`` reference otherwise. ``sampling_locations`` and
    ``attention_weights`` are cast to ``value``'s dtype. ``im2col_step`` has no numerical effect; as in the
    original op the batch must be divisible by ``min(N, im2col_step)``.
    """
    spatial_shapes_list = _check_inputs(
        value,
        spatial_shapes,
        level_start_index,
        sampling_locations,
        attention_weights,
        im2col_step,
        spatial_shapes_list,
    )
    sampling_locations = sampling_locations.to(value.dtype)
    attention_weights = attention_weights.to(value.dtype)
    if not _FORCED["reference"] and _use_compiled(value.device.type):
        if value.device.type == "cpu":
            spatial_shapes, level_start_index = spatial_shapes.cpu(), level_start_index.cpu()
        else:
            spatial_shapes = spatial_shapes.to(value.device)
            level_start_index = level_start_index.to(value.device)
        return torch.ops.refseg.ms_deform_attn_forward(
            value.contiguous(),
            spatial_shapes.contiguous(),
            level_start_index.contiguous(),
            sampling_locations.contiguous(),
            attention_weights.contiguous(),
            im2col_step,
        )
    return reference_multi_scale_deformable_attention(
        value,
        spatial_shapes,
        level_start_index,
        sampling_locations,
        attention_weights,
        im2col_step,
        spatial_shapes_list=spatial_shapes_list,
    )


@contextlib.contextmanager
def use_reference_implementation():
    """Inside this block, multi-scale deformable attention runs the pure-PyTorch reference, silently.

    For exporters that need standard operators: ONNX export traces the reference's ``grid_sample``
    (ONNX ``GridSample``) instead of the opaque ``refseg::ms_deform_attn_forward`` op. Blocks nest.
    """
    with _LOCK:
        _FORCED["reference"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _FORCED["reference"] -= 1


def loaded_library() -> str | None:
    return _STATE["library"]  # type: ignore[return-value]


def cpu_isa() -> str | None:
    return _STATE["isa"]  # type: ignore[return-value]


__all__ = [
    "implementation",
    "multi_scale_deformable_attention",
    "unavailable_reason",
    "use_reference_implementation",
]
