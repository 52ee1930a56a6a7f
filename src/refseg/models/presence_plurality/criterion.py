"""The training objective of eq. 5 (Kim et al., AAAI 2026, Sec. 3.4).

``L_total = lambda_pixel L_pixel(Y_hat, Y) + lambda_pr CE(y_hat_pr, y_pr) + lambda_pl CE(y_hat_pl, y_pl)``:

* ``L_pixel``: 2-class cross-entropy per pixel at the input resolution against the union ``Y`` of the referred
  instances; letterbox padding is ignored;
* ``y_pr = 1`` iff ``Y`` is not empty (index 1 = present);
* ``y_pl = 1`` iff the expression refers to two or more annotated instances (free from the annotations,
  Sec. 3.4); no-target samples are left out when ``ignore_no_target``.

Beyond the paper, ``lambda_dice > 0`` adds ``lambda_dice`` times a Dice loss of the foreground probability
(``refseg.modeling.losses.foreground_dice_loss``) to ``L_pixel``; the default 0 is the paper's loss
(docs/demo_model.md: it helps a small model trained from scratch leave the all-background start).

Under an active :class:`~refseg.modeling.loss_normalizer.LossNormalizer` (``train.py``) the three
cross-entropies divide by the step's global class-weight sums (valid pixels, present samples) and the plurality
term by its global number of labelled samples (:func:`loss_counts`), so any world size and accumulation give
the full batch's gradient.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...modeling.loss_normalizer import active_loss_normalizer, class_weighted
from ...modeling.losses import foreground_dice_loss

IGNORE_INDEX = -100


def presence_plurality_targets(
    mask_labels: list[torch.Tensor], ignore_no_target: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(Y, y_pr, y_pl)`` from per-sample instance masks ``(n_b, H, W)``.

    ``Y`` ``(B, H, W)`` long in {0, 1}; ``y_pr`` ``(B,)`` is ``n_b > 0`` (an all-empty stack counts as
    absent); ``y_pl`` ``(B,)`` is ``n_b >= 2``, or ``IGNORE_INDEX`` for no-target samples when
    ``ignore_no_target``.
    """
    unions, counts = [], []
    for masks in mask_labels:
        union = (
            masks.amax(dim=0) > 0.5 if masks.shape[0] else masks.new_zeros(masks.shape[1:], dtype=torch.bool)
        )
        unions.append(union)
        counts.append(int(masks.shape[0]) if bool(union.any()) else 0)
    device = mask_labels[0].device
    target = torch.stack(unions).long()
    counts_t = torch.tensor(counts, device=device)
    presence = (counts_t > 0).long()
    plurality = (counts_t >= 2).long()
    if ignore_no_target:
        plurality = plurality.masked_fill(counts_t == 0, IGNORE_INDEX)
    return target, presence, plurality


def loss_counts(mask_labels: list[torch.Tensor], pixel_mask: torch.Tensor | None = None) -> dict[str, float]:
    """The counts the criterion divides by: ``num_samples``, ``num_present`` (``y_pr = 1``), ``num_pixels`` and
    ``num_foreground_pixels`` (both outside the letterbox padding of ``pixel_mask``)."""
    target, presence, _ = presence_plurality_targets(mask_labels, ignore_no_target=False)
    valid = torch.ones_like(target, dtype=torch.bool)
    if pixel_mask is not None:
        valid = pixel_mask.to(target.device) >= 0.5
    return {
        "num_samples": float(len(mask_labels)),
        "num_present": float(presence.sum()),
        "num_pixels": float(valid.sum()),
        "num_foreground_pixels": float((target.bool() & valid).sum()),
    }


class PresencePluralityCriterion(nn.Module):
    """Eq. 5 with class weights for the pixel and presence terms (and an optional Dice term, off by default).

    Args:
        lambda_pixel, lambda_presence, lambda_plurality: the weights of the three terms (1, 0.1, 0.01).
        pixel_class_weights, presence_class_weights: cross-entropy class weights (background/absent first).
        use_plurality: include the plurality term.
        ignore_no_target: no-target samples do not enter the plurality term.
        lambda_dice: weight of a Dice term added to ``L_pixel`` (not in the paper; 0 = the paper's loss).
    """

    def __init__(
        self,
        lambda_pixel: float = 1.0,
        lambda_presence: float = 0.1,
        lambda_plurality: float = 0.01,
        pixel_class_weights: tuple[float, float] = (0.9, 1.1),
        presence_class_weights: tuple[float, float] = (0.9, 1.1),
        use_plurality: bool = True,
        ignore_no_target: bool = True,
        lambda_dice: float = 0.0,
    ) -> None:
        super().__init__()
        self.lambda_pixel, self.lambda_presence, self.lambda_plurality = (
            lambda_pixel,
            lambda_presence,
            lambda_plurality,
        )
        self.register_buffer("pixel_class_weights", torch.tensor(pixel_class_weights), persistent=False)
        self.register_buffer("presence_class_weights", torch.tensor(presence_class_weights), persistent=False)
        self.use_plurality = use_plurality
        self.ignore_no_target = ignore_no_target
        self.lambda_dice = lambda_dice

    def forward(
        self,
        mask_logits: torch.Tensor,
        presence_logits: torch.Tensor,
        plurality_logits: torch.Tensor | None,
        mask_labels: list[torch.Tensor],
        pixel_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its terms.

        Args:
            mask_logits: ``Y_hat`` ``(B, 2, H, W)`` at the resolution of ``mask_labels``.
            presence_logits: ``(B, 2)``; plurality_logits: ``(B, 2)`` or ``None``.
            mask_labels: ``B`` float tensors ``(n_b, H, W)``, one mask per referred instance.
            pixel_mask: ``(B, H, W)``, 0 at letterbox padding (ignored by ``L_pixel``).
        """
        target, presence, plurality = presence_plurality_targets(mask_labels, self.ignore_no_target)
        union = target
        if pixel_mask is not None:
            target = target.masked_fill(pixel_mask.to(target.device) < 0.5, IGNORE_INDEX)
        weights = self.pixel_class_weights.to(mask_logits.dtype)
        normalizer = active_loss_normalizer()
        if normalizer is None:
            loss_pixel = F.cross_entropy(mask_logits, target, weight=weights, ignore_index=IGNORE_INDEX)
        else:
            loss_pixel = F.cross_entropy(
                mask_logits, target, weight=weights, ignore_index=IGNORE_INDEX, reduction="sum"
            ) / normalizer.denominator(
                class_weighted("num_pixels", "num_foreground_pixels", self.pixel_class_weights.tolist())
            )
        if self.lambda_dice > 0:
            valid = None if pixel_mask is None else pixel_mask.to(union.device) >= 0.5
            # the sigmoid of the logit difference is the softmax foreground probability
            foreground = mask_logits[:, 1] - mask_logits[:, 0]
            loss_pixel = loss_pixel + self.lambda_dice * foreground_dice_loss(foreground, union, valid)
        presence_weights = self.presence_class_weights.to(presence_logits.dtype)
        if normalizer is None:
            loss_presence = F.cross_entropy(presence_logits, presence, weight=presence_weights)
        else:
            loss_presence = F.cross_entropy(
                presence_logits, presence, weight=presence_weights, reduction="sum"
            ) / normalizer.denominator(
                class_weighted("num_samples", "num_present", self.presence_class_weights.tolist())
            )
        loss_dict = {"loss_pixel": loss_pixel, "loss_presence": loss_presence}
        loss = self.lambda_pixel * loss_pixel + self.lambda_presence * loss_presence
        if self.use_plurality and plurality_logits is not None:
            if normalizer is not None:  # labelled samples: the present ones, or all of them
                labelled = {"num_present" if self.ignore_no_target else "num_samples": 1.0}
                loss_plurality = F.cross_entropy(
                    plurality_logits, plurality, ignore_index=IGNORE_INDEX, reduction="sum"
                ) / normalizer.denominator(labelled, minimum=1.0)
            elif bool((plurality != IGNORE_INDEX).any()):
                loss_plurality = F.cross_entropy(plurality_logits, plurality, ignore_index=IGNORE_INDEX)
            else:  # only no-target samples: nothing to learn, but keep the graph connected
                loss_plurality = plurality_logits.sum() * 0.0
            loss_dict["loss_plurality"] = loss_plurality
            loss = loss + self.lambda_plurality * loss_plurality
        return loss, loss_dict


__all__ = ["IGNORE_INDEX", "PresencePluralityCriterion", "loss_counts", "presence_plurality_targets"]
