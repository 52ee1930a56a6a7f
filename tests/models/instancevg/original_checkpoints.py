"""Checkpoint files written the way the original InstanceVG training script writes them.

A reproduction of what its training loop hands to ``save_checkpoint`` and what that function adds, per
dataset branch (paper §4.3 training setup; refseg docs/models/instancevg.md):

* the model ``state_dict`` (an ``OrderedDict`` with ``_metadata``, ``module.``-prefixed under DDP);
* ``optimizer``: Adam with AMSGrad (betas 0.9/0.98, eps 1e-9) over three parameter groups (encoder, an empty
  language-encoder group, the rest), after a few steps, so its state holds ``step``, ``exp_avg``,
  ``exp_avg_sq`` and ``max_exp_avg_sq`` per parameter;
* ``scheduler``: the warm-up multi-step schedule, a ``LambdaLR`` over a closure, stepped once per epoch (or
  one of the original's other registered schedulers: cosine annealing, with or without warm restarts);
* ``lr`` (a Python float), ``epoch`` (an int), ``amp`` (the fp16 loss-scaler state) when trained in fp16;
* the epoch's metrics under the branch's own keys: numpy scalars where the evaluators compute with numpy
  (gRefCOCO, Ref-ZOM), Python floats where the branch's evaluation is disabled (R-RefCOCO), a tensor for the
  detection accuracy of the RefCOCO (mixed) branch.

``save_original_checkpoint(path, state_dict, branch, legacy=..., numpy1_names=...)`` writes such a file in
torch's zip format or its legacy format (``_use_new_zipfile_serialization=False``); ``numpy1_names`` names
the numpy scalar reconstructor as numpy 1.x did (``numpy.core.multiarray.scalar``).
"""

from __future__ import annotations

import pickle
import types
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch

BRANCHES = ("GRefCOCO", "RefZOM", "RRefCOCO", "MixedSeg")


def _metrics(branch: str, epoch: int) -> dict:
    """The ``saved_info`` of one branch after its evaluation, with the types its evaluators produce."""
    f = np.float64
    if branch == "GRefCOCO":  # grec F1 / N-acc and gres gIoU / cIoU, summed over splits and averaged
        values = {"F1score": f(61.25), "Nacc_rec": f(58.5), "gIoU": f(66.125), "cIoU": f(64.0)}
        best = {f"best_{k}": f(v - 1.5) for k, v in values.items()}
    elif branch == "RefZOM":  # np.mean(...) * 100 and cum_I * 100.0 / cum_U with numpy sums
        values = {"mIoU": f(65.75), "oIoU": f(68.25), "macc": f(93.5)}
        best = {f"best_{k}": f(v - 0.5) for k, v in values.items()}
    elif branch == "RRefCOCO":  # evaluation commented out in the original: zeros averaged over 3 splits
        values = {"mIoU": 0 / 3, "oIoU": 0 / 3, "mRR": 0 / 3, "rIoU": 0 / 3}
        best = {f"best_{k}": 0.0 for k in values}
    elif branch == "MixedSeg":  # DetACC is a tensor (mean of bool tensors * 100), the IoUs .item() floats
        values = {"mIoU": 74.5, "oIoU": 72.25, "d_acc": torch.tensor(85.0)}
        best = {"best_d_acc": torch.tensor(84.0), "best_mIoU": 73.0, "best_oIoU": 0.0}
    else:
        raise ValueError(branch)
    return {"epoch": epoch, **values, **best}


def _lr_lambda(warmup_epochs: int, decay_steps: Sequence[int], decay_ratio: float):
    def lr_lambda(epoch: int) -> float:
        if epoch <= warmup_epochs - 1:
            return float(epoch + 1) / float(warmup_epochs + 1)
        factor = 1.0
        for step in decay_steps:
            if epoch + 1 < step:
                break
            factor *= decay_ratio
        return factor

    return lr_lambda


class _WarmUpMultiStep(torch.optim.lr_scheduler.LambdaLR):
    """The original's warm-up multi-step schedule: a ``LambdaLR`` whose lambda is a closure."""

    def __init__(self, optimizer, warmup_epochs: int, decay_steps: Sequence[int], decay_ratio: float):
        schedule = _lr_lambda(warmup_epochs, decay_steps, decay_ratio)
        super().__init__(optimizer, lr_lambda=lambda epoch: schedule(epoch))


SCHEDULERS = ("warmup_multistep", "cosine", "cosine_restarts")  # the schedulers the original registers


def _scheduler(optimizer, kind: str):
    if kind == "warmup_multistep":
        return _WarmUpMultiStep(optimizer, warmup_epochs=1, decay_steps=[7], decay_ratio=0.1)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10, eta_min=0)
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, 5, T_mult=1, eta_min=0)


def _train_states(
    state_dict: dict[str, torch.Tensor], epochs: int, scheduler_kind: str = "warmup_multistep"
) -> tuple[dict, dict, float]:
    """Optimizer and scheduler states after ``epochs`` epochs of one step each, and the group-0 lr."""
    torch.manual_seed(0)
    params = {
        k: torch.nn.Parameter(v.detach().clone().float())
        for k, v in state_dict.items()
        if v.is_floating_point() and "running_" not in k and "empty_weight" not in k
    }
    groups = [
        {"params": [p for k, p in params.items() if "vis_enc" in k], "lr": 5e-5},
        {"params": [p for k, p in params.items() if "lan_enc" in k], "lr": 5e-4},
        {"params": [p for k, p in params.items() if "vis_enc" not in k and "lan_enc" not in k], "lr": 5e-4},
    ]
    optimizer = torch.optim.Adam(groups, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.0, amsgrad=True)
    scheduler = _scheduler(optimizer, scheduler_kind)
    for _ in range(epochs):
        for p in params.values():
            p.grad = torch.randn_like(p) * 1e-3
        optimizer.step()
        scheduler.step()
    return optimizer.state_dict(), scheduler.state_dict(), optimizer.param_groups[0]["lr"]


def original_checkpoint(
    state_dict: dict[str, torch.Tensor],
    branch: str,
    ddp: bool = False,
    amp: bool = False,
    epochs: int = 2,
    scheduler: str = "warmup_multistep",
) -> dict:
    """The dict that ``save_checkpoint`` passes to ``torch.save`` for ``branch``."""
    model_state = OrderedDict((("module." if ddp else "") + k, v) for k, v in state_dict.items())
    model_state._metadata = OrderedDict(  # what nn.Module.state_dict() attaches
        [("", {"version": 1}), ("vis_enc", {"version": 1}), ("head", {"version": 1})]
    )
    optimizer_state, scheduler_state, lr = _train_states(state_dict, epochs, scheduler)
    checkpoint = _metrics(branch, epochs - 1)
    if amp:  # apex.amp.state_dict(): one loss scaler
        checkpoint["amp"] = OrderedDict([("loss_scaler0", {"loss_scale": 65536.0, "unskipped": 17})])
    checkpoint.update(
        {"state_dict": model_state, "optimizer": optimizer_state, "scheduler": scheduler_state, "lr": lr}
    )
    return checkpoint


class _Numpy1Pickler(pickle._Pickler):
    """Pickles numpy scalars under numpy 1.x's module name of the reconstructor."""

    def save_global(self, obj, name=None):  # noqa: D102 - pickle's hook
        if obj is np.float64(0).__reduce__()[0]:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\nscalar\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


_NUMPY1_PICKLE = types.SimpleNamespace(Pickler=_Numpy1Pickler, dump=pickle.dump, __name__="pickle")


def save_original_checkpoint(
    path,
    state_dict: dict[str, torch.Tensor],
    branch: str,
    legacy: bool = False,
    numpy1_names: bool = False,
    **kwargs,
):
    """Write ``original_checkpoint(state_dict, branch, **kwargs)`` to ``path`` as ``torch.save`` does."""
    extra = {"pickle_module": _NUMPY1_PICKLE} if numpy1_names else {}
    torch.save(
        original_checkpoint(state_dict, branch, **kwargs),
        path,
        _use_new_zipfile_serialization=not legacy,
        **extra,
    )
    return path
