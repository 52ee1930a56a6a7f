"""Learning-rate schedules of the training recipes, as multiplicative factors of the initial learning rates.

Each function maps an optimizer step (0 for the first update) to the factor applied to every parameter
group's initial learning rate, for ``torch.optim.lr_scheduler.LambdaLR``:

* :func:`linear_factor`: optional linear warm-up, then linear decay to a floor (InstAlign, Sec. 4.1:
  1e-4 -> 1e-6);
* :func:`poly_factor`: polynomial decay ``(1 - t / T) ** power`` per iteration (METRIS, Appendix A;
  presence & plurality, Sec. 4.2: power 0.9);
* :func:`multistep_warmup_factor`: the released InstanceVG code's epoch-wise step schedule (a linear
  warm-up over the first epochs, then x ``gamma`` from each milestone epoch on; paper Sec. 4.3: "reduced by
  a factor of 10 at the 7th epoch");
* :func:`multistep_steps_factor`: a step schedule counted in optimizer steps, its milestones given for a run of
  ``reference_steps`` steps and moved proportionally to the run's length (the released ReLA code: x0.1 at
  110k and 140k of 150k iterations, detectron2's ``WarmupMultiStepLR`` with a no-op warm-up).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["linear_factor", "multistep_steps_factor", "multistep_warmup_factor", "poly_factor"]


def linear_factor(step: int, total_steps: int, warmup_steps: int = 0, floor: float = 0.0) -> float:
    """``(step + 1) / warmup_steps`` during the warm-up, then linear from 1 to ``floor`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return floor + (1.0 - floor) * (1.0 - progress)


def poly_factor(
    step: int, total_steps: int, power: float = 0.9, warmup_steps: int = 0, floor: float = 0.0
) -> float:
    """``floor + (1 - floor) * (1 - t / T) ** power`` with ``t`` the step after the optional warm-up.

    With no warm-up and no floor this is LAVT's ``(1 - step / total) ** 0.9`` stepped every iteration: 1 at
    the first update, 0 at ``total_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return floor + (1.0 - floor) * (1.0 - progress) ** power


def multistep_warmup_factor(
    step: int,
    steps_per_epoch: int,
    milestones: Sequence[int],
    gamma: float = 0.1,
    warmup_epochs: int = 0,
) -> float:
    """The released InstanceVG code's ``MultiStepLRWarmUp``, stepped once per epoch.

    With ``e = step // steps_per_epoch`` (the 0-based epoch): ``(e + 1) / (warmup_epochs + 1)`` while
    ``e < warmup_epochs``; afterwards ``gamma ** k`` with ``k`` the number of milestones ``m`` (1-based
    epochs) with ``e + 1 >= m``. gRefCOCO: 10 epochs, warm-up 1 (epoch 0 at 0.5x), milestone 7 (epochs
    6-9 at 0.1x).
    """
    epoch = step // max(1, steps_per_epoch)
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    return gamma ** sum(1 for m in milestones if epoch + 1 >= m)


def multistep_steps_factor(
    step: int,
    total_steps: int,
    milestones: Sequence[int],
    reference_steps: int,
    gamma: float = 0.1,
    warmup_steps: int = 0,
) -> float:
    """``gamma ** k``, ``k`` the milestones reached: ``m`` (a step of a ``reference_steps``-step run) is reached
    once ``step * reference_steps >= m * total_steps``, i.e. at the same fraction of this run.

    With ``total_steps == reference_steps`` this is detectron2's ``WarmupMultiStepLR`` (warm-up factor 1): the
    rate drops from step ``m`` (0-based) on. ``(step + 1) / warmup_steps`` during an optional linear warm-up.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return gamma ** sum(1 for m in milestones if step * reference_steps >= m * total_steps)
