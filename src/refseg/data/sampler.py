"""Shuffling that keeps the expressions of one image together, so that an image is encoded once per batch.

Referring datasets hold several expressions per image (3 per synthetic scene, ~3 per RefCOCO image). With
:class:`ImageGroupedSampler` the rows of one image come out consecutively (images in a fresh random order
every epoch, the rows of an image in random order), and a collate function can pass each image once with
``image_indices`` (see ``InstAlignForReferringSegmentation.forward``): the backbone and pixel decoder, most
of a training step, then run once per image instead of once per expression.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence

import torch
from torch.utils.data import Sampler


class ImageGroupedSampler(Sampler[int]):
    """Random permutation of row indices in which rows with the same image id are adjacent.

    Args:
        image_ids: the image id of every row (any hashable values; rows with equal ids share an image).
        seed: base seed; epoch ``e`` uses ``seed + e``, so an order is reproducible and a resumed run sees
            the same batches as an uninterrupted one (:meth:`set_epoch` is called by Accelerate).
    """

    def __init__(self, image_ids: Sequence[Hashable], seed: int = 0) -> None:
        groups: dict[Hashable, list[int]] = {}
        for index, image_id in enumerate(image_ids):
            groups.setdefault(image_id, []).append(index)
        self.groups = list(groups.values())
        self.num_rows = len(image_ids)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the next iteration's order (as ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_rows

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        for group in torch.randperm(len(self.groups), generator=generator).tolist():
            rows = self.groups[group]
            for position in torch.randperm(len(rows), generator=generator).tolist():
                yield rows[position]


def image_indices_of(keys: Sequence[Hashable]) -> tuple[list[int], list[int]]:
    """Deduplicate a batch's image keys: ``(first row of each distinct image, image index of every row)``.

    >>> image_indices_of(["a", "a", "b", "a"])
    ([0, 2], [0, 0, 1, 0])
    """
    first: dict[Hashable, int] = {}
    rows, indices = [], []
    for row, key in enumerate(keys):
        if key not in first:
            first[key] = len(rows)
            rows.append(row)
        indices.append(first[key])
    return rows, indices


__all__ = ["ImageGroupedSampler", "image_indices_of"]
