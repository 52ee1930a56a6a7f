"""Helpers shared by the per-model paper-wiring tests (``tests/models/<model_type>/test_paper_wiring_*.py``):
the ImageNet statistics the papers' encoders were pretrained with, a processor check against them, and
probabilities written as logits so that thresholds are exercised near their value."""

from __future__ import annotations

import math

import numpy as np
import torch

# ImageNet mean / std (torchvision's values; the Swin, BEiT-3 and Mask2Former code lineages of the four papers)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def logit(probability: float) -> float:
    """The logit whose sigmoid is ``probability``."""
    return math.log(probability / (1.0 - probability))


def constant_image(height: int, width: int, rgb: tuple[int, int, int] = (200, 100, 50)) -> np.ndarray:
    """An 8-bit ``(height, width, 3)`` image of one colour: every resize keeps its values exactly."""
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (height, width, 3)).copy()


def assert_imagenet_normalisation(
    pixel_values: torch.Tensor, rgb: tuple[int, int, int] = (200, 100, 50)
) -> None:
    """Every pixel of ``pixel_values`` (B, 3, H, W) of :func:`constant_image` is ``(rgb / 255 - mean) / std``."""
    expected = [(value / 255.0 - mean) / std for value, mean, std in zip(rgb, IMAGENET_MEAN, IMAGENET_STD)]
    for channel, value in enumerate(expected):
        torch.testing.assert_close(
            pixel_values[:, channel], torch.full_like(pixel_values[:, channel], value), rtol=0, atol=1e-5
        )
