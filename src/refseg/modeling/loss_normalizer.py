"""Global loss denominators: every process and micro-batch of an optimisation step divides by the same count.

A loss that divides a sum by a count taken from its own batch (matched masks, boxes, valid pixels, the sum of
cross-entropy class weights) gives a different gradient when the batch is split over processes or gradient
accumulation steps. DETR (Carion et al., ECCV 2020, Sec. 4 and its code's ``num_boxes``) and Mask2Former
(arXiv 2112.01527, ``num_masks``) all-reduce the count over processes; refseg also sums it over the
accumulated micro-batches of the step.

:class:`LossNormalizer` holds the step's totals ``T`` (summed over all processes and micro-batches) and a
``scale = num_processes x accumulation_steps``. Inside ``with normalizer:`` the criteria divide their sums by
``T / scale`` instead of their local count: Accelerate divides each micro-batch loss by the accumulation steps
and DDP averages the gradients over processes, so the step's gradient is ``sum / T``, the gradient of the
whole global batch in one process. With one process and no accumulation ``T / scale`` is the local count and
the loss is unchanged. Without an active normaliser the criteria use their local count (as before).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token

_ACTIVE: ContextVar[LossNormalizer | None] = ContextVar("refseg_loss_normalizer", default=None)


class LossNormalizer:
    """Step totals of the loss counts and their ``scale`` (processes x accumulation steps); a context manager.

    Args:
        totals: count name -> total over all processes and micro-batches of the step (e.g. ``num_masks``).
        scale: ``num_processes * gradient_accumulation_steps``.
    """

    def __init__(self, totals: Mapping[str, float], scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.totals = {name: float(value) for name, value in totals.items()}
        self.scale = float(scale)
        self._tokens: list[Token] = []

    def __repr__(self) -> str:
        return f"LossNormalizer(totals={self.totals}, scale={self.scale:g})"

    def __enter__(self) -> LossNormalizer:
        self._tokens.append(_ACTIVE.set(self))
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._tokens.pop())

    def total(self, name: str) -> float:
        """The step's total of ``name``; a ``KeyError`` names the counts it holds."""
        if name not in self.totals:
            raise KeyError(f"the loss normaliser has no count {name!r} (it has {sorted(self.totals)})")
        return self.totals[name]

    def denominator(self, coefficients: Mapping[str, float], minimum: float = 0.0) -> float:
        """``max(sum_k c_k T_k, minimum) / scale``: the per-micro-batch share of a global (weighted) count."""
        value = sum(float(c) * self.total(name) for name, c in coefficients.items())
        return max(value, minimum) / self.scale


def active_loss_normalizer() -> LossNormalizer | None:
    """The normaliser of the enclosing ``with LossNormalizer(...)`` block, or ``None``."""
    return _ACTIVE.get()


def class_weighted(total: str, positive: str, weights: tuple[float, float]) -> dict[str, float]:
    """Coefficients of a 2-class weighted cross-entropy's denominator ``w0 (T_total - T_positive) + w1 T_positive``."""
    w0, w1 = float(weights[0]), float(weights[1])
    return {total: w0, positive: w1 - w0}


__all__ = ["LossNormalizer", "active_loss_normalizer", "class_weighted"]
