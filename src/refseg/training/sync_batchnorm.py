"""BatchNorm whose training statistics are those of the global batch (all processes), on any device.

``torch.nn.SyncBatchNorm`` computes the batch statistics over every process, but its training forward runs on
accelerators only (CUDA and a few others), not on CPU/gloo. :class:`CrossProcessBatchNorm` does the same with two
autograd-aware all-reduces (the per-channel sums and counts, then the sums of squared deviations), so CPU runs
and tests train with the statistics that one process would compute on the full batch, and its backward
all-reduces the statistics' gradients like SyncBatchNorm's.
:func:`convert_sync_batchnorm` picks ``torch.nn.SyncBatchNorm`` on CUDA (and XPU, HPU) and this module on CPU
and MPS.

METRIS's decoder (CrossVLT lineage, which trains with SyncBatchNorm) and InstanceVG's UNet global decoder
(Sec. 3.2; its released code keeps per-GPU BatchNorm) have BatchNorm; InstAlign and presence & plurality have
none.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def _world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose backward sums the gradients over processes (as SyncBatchNorm's backward)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        torch.distributed.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(tensor)


class CrossProcessBatchNorm(_BatchNorm):
    """BatchNorm (any ``(N, C, ...)`` input) with batch statistics over all processes in training.

    In evaluation, without ``torch.distributed`` or with one process it is ``nn.BatchNorm*d``.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an (N, C, ...) input, got {input.dim()}D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        use_batch_stats = self.training or not self.track_running_stats
        if not use_batch_stats or _world_size() == 1:
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float()  # statistics in float32, as BatchNorm computes them under mixed precision
        count = x.new_full((1,), x.numel() / max(x.shape[1], 1))
        sums = _all_reduce(torch.cat([x.sum(dims), count]))
        total = sums[-1]
        mean = sums[:-1] / total
        centered = x - mean.view(shape)
        var = _all_reduce((centered * centered).sum(dims)) / total  # biased, as BatchNorm normalises
        out = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.float().view(shape) + self.bias.float().view(shape)
        if self.training and self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), float(total.detach()))
        return out.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, total: float) -> None:
        """As ``F.batch_norm``: unbiased variance, ``momentum`` or (``None``) the cumulative average."""
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var * (total / max(total - 1.0, 1.0))
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """``module`` with every BatchNorm (not yet synced) replaced by this class, sharing its parameters."""
        if isinstance(module, _BatchNorm) and not isinstance(module, (cls, nn.SyncBatchNorm)):
            converted = cls(
                module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
            )
            if module.affine:
                converted.weight, converted.bias = module.weight, module.bias
            if module.track_running_stats:
                converted.running_mean = module.running_mean
                converted.running_var = module.running_var
                converted.num_batches_tracked = module.num_batches_tracked
            converted.train(module.training)
            return converted
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has any BatchNorm layer."""
    return any(isinstance(m, _BatchNorm) for m in model.modules())


def convert_sync_batchnorm(model: nn.Module, device_type: str) -> nn.Module:
    """Every BatchNorm of ``model`` synced across processes: ``torch.nn.SyncBatchNorm`` on the devices whose
    training forward it supports (``"cuda"``, ``"hpu"``, ``"xpu"``, a PrivateUse1 backend),
    :class:`CrossProcessBatchNorm` elsewhere (``"cpu"``, ``"mps"``)."""
    if device_type in ("cuda", "hpu", "xpu", torch._C._get_privateuse1_backend_name()):
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return CrossProcessBatchNorm.convert(model)


def resolve_sync_batchnorm(mode: str, model: nn.Module, num_processes: int) -> bool:
    """``--sync_batchnorm``: ``"on"``, ``"off"``, or ``"auto"`` (on when several processes train a model with
    BatchNorm, as detectron2 and mmdetection configure multi-GPU runs)."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"sync_batchnorm must be 'auto', 'on' or 'off', got {mode!r}")
    if mode == "auto":
        return num_processes > 1 and has_batchnorm(model)
    return mode == "on" and has_batchnorm(model)


__all__ = ["CrossProcessBatchNorm", "convert_sync_batchnorm", "has_batchnorm", "resolve_sync_batchnorm"]
