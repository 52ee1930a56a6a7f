"""The same step at every world size and accumulation: global loss counts for each optimisation step.

``train.py`` reads the micro-batches of one optimisation step first, counts what the model's criterion divides by
(:func:`batch_loss_counts`: matched masks, boxes, samples, valid and foreground pixels), sums the counts over the
micro-batches and all processes (Accelerate's ``reduce``) and runs each micro-batch inside the resulting
:class:`~refseg.modeling.loss_normalizer.LossNormalizer`, as DETR all-reduces ``num_boxes`` (Carion et al.,
ECCV 2020) and transformers' Trainer counts ``num_items_in_batch`` over the accumulation steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch

from ..modeling.loss_normalizer import LossNormalizer


def _instalign(batch: Mapping[str, Any], config) -> dict[str, float]:
    from ..models.instalign.criterion import loss_counts

    return loss_counts(batch["mask_labels"], config.num_queries)


def _instancevg(batch: Mapping[str, Any], config) -> dict[str, float]:
    from ..models.instancevg.criterion import loss_counts

    return loss_counts(batch["mask_labels"], config.num_queries)


def _metris(batch: Mapping[str, Any], config) -> dict[str, float]:
    from ..models.metris.criterion import loss_counts

    return loss_counts(batch["mask_labels"])


def _presence_plurality(batch: Mapping[str, Any], config) -> dict[str, float]:
    from ..models.presence_plurality.criterion import loss_counts

    return loss_counts(batch["mask_labels"], batch.get("pixel_mask"))


def _rela(batch: Mapping[str, Any], config) -> dict[str, float]:
    from ..models.rela.criterion import loss_counts

    return loss_counts(batch["mask_labels"], config.minimap_size)


LOSS_COUNTS: dict[str, Callable[[Mapping[str, Any], Any], dict[str, float]]] = {
    "instalign": _instalign,
    "instancevg": _instancevg,
    "metris": _metris,
    "presence_plurality": _presence_plurality,
    "rela": _rela,
}


def batch_loss_counts(batch: Mapping[str, Any], config) -> dict[str, float] | None:
    """The loss counts of one training batch of a ``config.model_type`` model (``None``: no counter known)."""
    counter = LOSS_COUNTS.get(getattr(config, "model_type", None))
    if counter is None or batch.get("mask_labels") is None:
        return None
    return counter(batch, config)


def step_loss_normalizer(
    batches: list[Mapping[str, Any]], config, accelerator, accumulation_steps: int
) -> LossNormalizer | None:
    """The normaliser of one optimisation step from its micro-batches on this process.

    The counts are summed over ``batches`` and over the processes; ``scale = num_processes x
    accumulation_steps`` (the configured steps, also for an epoch's shorter last step: Accelerate always divides
    the loss by them). Every process must call this for every step (it is a collective).
    """
    counts = [batch_loss_counts(batch, config) for batch in batches]
    if not counts or any(c is None for c in counts):
        return None
    names = sorted(counts[0])
    dtype = torch.float32 if accelerator.device.type == "mps" else torch.float64
    local = torch.tensor(
        [sum(c[name] for c in counts) for name in names], dtype=dtype, device=accelerator.device
    )
    totals = accelerator.reduce(local, reduction="sum") if accelerator.num_processes > 1 else local
    return LossNormalizer(
        dict(zip(names, totals.tolist())), scale=accelerator.num_processes * accumulation_steps
    )


def loss_normalized_batches(
    batches: Iterable[Mapping[str, Any]], config, accelerator, accumulation_steps: int
) -> Iterator[tuple[Mapping[str, Any], LossNormalizer | None]]:
    """``(batch, normaliser)`` pairs: the batches of each optimisation step share the step's normaliser.

    The step's ``accumulation_steps`` batches are read before the first is yielded. An Accelerate dataloader
    flags its end when it hands out its last batch, and ``accelerator.accumulate`` then syncs gradients at
    once; so while the earlier batches of the epoch's last step are yielded the flag is held off, and it is
    set again for the last one.
    """
    iterator = iter(batches)
    state = accelerator.gradient_state
    while True:
        group = []
        for batch in iterator:
            group.append(batch)
            # never ask an ended loader for more: that would close it before its last batch is used
            if len(group) == accumulation_steps or state.end_of_dataloader:
                break
        if not group:
            return
        normalizer = step_loss_normalizer(group, config, accelerator, accumulation_steps)
        at_end = state.end_of_dataloader
        loader = state.active_dataloader
        for index, batch in enumerate(group):
            if at_end:
                loader.end_of_dataloader = index == len(group) - 1
            yield batch, normalizer


__all__ = ["LOSS_COUNTS", "batch_loss_counts", "loss_normalized_batches", "step_loss_normalizer"]
