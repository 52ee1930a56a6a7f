"""InstanceVG training objective (Sec. 3.3-3.4, eq. 5-7) with the point-guided object matcher.

* Point-guided object matcher (eq. 5): per image and decoder layer, Hungarian matching on
  ``lambda_cls * (-p_obj) + lambda_box * L1(b, b_gt) - lambda_giou * GIoU(b, b_gt) + lambda_point * L1(P_r, centre(b_gt))``
  (boxes ``(cx, cy, w, h)`` normalised; ``P_r`` the selector's prior points).
* ``L_detr``: DETR's weighted cross-entropy (no-object weight 0.1), L1 and GIoU box losses per decoder layer. The
  released code adds the earlier layers with weight 1/1/1 (``aux_loss_weighting="unweighted"``) and the last with
  1/5/2; ``"weighted"`` uses 1/5/2 for all.
* Query-mask aligner (Sec. 3.3.2): the last layer's matching pairs query ``i``'s instance mask with the matched
  target's mask. ``L_ins-seg`` (eq. 7): dice + BCE on the positive pairs plus ``lambda_neg`` (dice + BCE) of the
  unmatched queries against empty masks.
* ``L_seg``: dice + BCE of the global mask against the union of the targets.
* Minimap loss (Fig. 4, "Minimap Sup."): ``0.1 * (dice + BCE)`` of the attention minimap used as logits against
  the union downsampled (nearest) to the patch grid.
* ``L_exist``: two-way softmax cross-entropy of the no-target head with class weights (0.9, 1.1) (the paper says
  BCE; the released code trains a 2-way softmax).

Total (eq. 6, as in the code): ``lambda_detr * L_detr + lambda_seg * L_seg + lambda_instance * L_ins-seg +
minimap + lambda_exist * L_exist``. A batch whose samples all have no target gives a finite loss (the positive
instance term is 0; the released code returns NaN there).

Counts: ``num_boxes`` is averaged over processes as DETR does. Under an active
:class:`~refseg.modeling.loss_normalizer.LossNormalizer` (``train.py``) every denominator (boxes, matched and
unmatched queries, images, the class-weight sums of the weighted cross-entropies) is the step's global one,
summed over processes and accumulated micro-batches (:func:`loss_counts`), so any world size and accumulation
give the full batch's gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ...boxes import box_cxcywh_to_xyxy, generalized_box_iou
from ...modeling.loss_normalizer import active_loss_normalizer, class_weighted
from ...modeling.losses import dice_loss, sigmoid_ce_loss
from ...modeling.matching import hungarian_matcher


def _global_count(count: float, device: torch.device) -> float:
    """``count`` averaged over processes when ``torch.distributed`` is initialised (DETR's ``num_boxes``)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        value = torch.tensor([count], dtype=torch.float32, device=device)
        torch.distributed.all_reduce(value)
        count = value.item() / torch.distributed.get_world_size()
    return count


def loss_counts(mask_labels: list[torch.Tensor], num_queries: int) -> dict[str, float]:
    """The counts the criterion divides by, from ``B`` instance-mask tensors ``(n_b, H, W)``.

    ``num_samples`` (``B``), ``num_boxes`` (``sum n_b``), ``num_matched`` (``sum min(N_q, n_b)``, the pairs of
    the Hungarian assignment of every decoder layer) and ``num_empty`` (no-target samples).
    """
    sizes = [int(masks.shape[0]) for masks in mask_labels]
    return {
        "num_samples": float(len(sizes)),
        "num_boxes": float(sum(sizes)),
        "num_matched": float(sum(min(int(num_queries), n) for n in sizes)),
        "num_empty": float(sum(n == 0 for n in sizes)),
    }


def _weighted_ce(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, coefficients: dict[str, float]
) -> torch.Tensor:
    """``F.cross_entropy(logits, labels, weight)``; under a loss normaliser its weight sum is the global one."""
    normalizer = active_loss_normalizer()
    if normalizer is None:
        return F.cross_entropy(logits, labels, weight=weight)
    loss = F.cross_entropy(logits, labels, weight=weight, reduction="sum")
    return loss / normalizer.denominator(coefficients)


def _count(name: str, local: float, minimum: float = 0.0) -> float:
    """``max(local, minimum)``, or the step's global share of ``name`` under a loss normaliser."""
    normalizer = active_loss_normalizer()
    if normalizer is None:
        return max(local, minimum)
    return normalizer.denominator({name: 1.0}, minimum=minimum)


class PointGuidedMatcher(nn.Module):
    """Eq. 5: Hungarian matching of queries to targets with a point-to-centre term.

    Args:
        cost_class, cost_bbox, cost_giou, cost_point: ``lambda_cls``, ``lambda_box``, ``lambda_giou``,
            ``lambda_point`` (1, 5, 2, 2).
    """

    def __init__(
        self, cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0, cost_point: float = 2.0
    ) -> None:
        super().__init__()
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.cost_point = cost_point

    def cost_matrix(
        self,
        class_logits: torch.Tensor,
        boxes: torch.Tensor,
        points: torch.Tensor,
        target_boxes: torch.Tensor,
    ) -> torch.Tensor:
        """``(N_q, M)`` cost of one image: logits ``(N_q, 2)``, boxes ``(N_q, 4)``, points ``(N_q, 2)``,
        target boxes ``(M, 4)`` (all ``cx, cy, w, h`` / ``x, y`` normalised)."""
        prob = class_logits.float().softmax(-1)[:, :1]
        boxes, points, target_boxes = boxes.float(), points.float(), target_boxes.float()
        giou = generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(target_boxes))
        # summed in the released code's order (box, class, GIoU, then the point term)
        cost = self.cost_bbox * torch.cdist(boxes, target_boxes, p=1) + self.cost_class * -prob
        cost = cost + self.cost_giou * -giou
        return cost + self.cost_point * torch.cdist(points, target_boxes[:, :2], p=1)

    @torch.no_grad()
    def forward(
        self,
        class_logits: torch.Tensor,
        boxes: torch.Tensor,
        points: torch.Tensor,
        target_boxes: list[torch.Tensor],
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image ``(query indices, target indices)`` (see :func:`refseg.modeling.matching.hungarian_matcher`)."""
        costs = [
            self.cost_matrix(class_logits[b], boxes[b], points[b], target_boxes[b])
            if len(target_boxes[b])
            else class_logits.new_zeros(class_logits.shape[1], 0)
            for b in range(class_logits.shape[0])
        ]
        return hungarian_matcher(costs)


@dataclass
class InstanceVGTargets:
    """Per-sample targets at the model input resolution.

    Args:
        masks: ``(n_b, H, W)`` float {0, 1} instance masks per sample (``n_b = 0``: no target).
        boxes: ``(n_b, 4)`` normalised ``(cx, cy, w, h)`` per sample.
    """

    masks: list[torch.Tensor]
    boxes: list[torch.Tensor]


class InstanceVGCriterion(nn.Module):
    """The loss of eq. 6 with the released code's terms and weights (see the module docstring)."""

    def __init__(
        self,
        matcher: PointGuidedMatcher,
        loss_class_weight: float = 1.0,
        loss_bbox_weight: float = 5.0,
        loss_giou_weight: float = 2.0,
        no_object_weight: float = 0.1,
        aux_loss_weighting: str = "unweighted",
        detr_loss_weight: float = 0.1,
        global_mask_loss_weight: float = 1.0,
        instance_mask_loss_weight: float = 1.0,
        negative_mask_weight: float = 0.2,
        minimap_loss_weight: float = 0.1,
        no_target_loss_weight: float = 0.2,
        no_target_class_weights: tuple[float, float] = (0.9, 1.1),
    ) -> None:
        super().__init__()
        self.matcher = matcher
        self.last_weights = (loss_class_weight, loss_bbox_weight, loss_giou_weight)
        self.aux_weights = (1.0, 1.0, 1.0) if aux_loss_weighting == "unweighted" else self.last_weights
        self.no_object_weight = no_object_weight
        self.detr_loss_weight = detr_loss_weight
        self.global_mask_loss_weight = global_mask_loss_weight
        self.instance_mask_loss_weight = instance_mask_loss_weight
        self.negative_mask_weight = negative_mask_weight
        self.minimap_loss_weight = minimap_loss_weight
        self.no_target_loss_weight = no_target_loss_weight
        self.no_target_class_weights = tuple(float(w) for w in no_target_class_weights)

    def detr_losses(
        self,
        class_logits: torch.Tensor,
        boxes: torch.Tensor,
        target_boxes: list[torch.Tensor],
        indices: list[tuple[torch.Tensor, torch.Tensor]],
        num_boxes: float,
    ) -> dict[str, torch.Tensor]:
        """DETR's ``loss_class`` (weighted CE over all queries), ``loss_bbox`` (L1) and ``loss_giou`` of one layer."""
        device = class_logits.device
        batch_idx = torch.cat([torch.full_like(p, b) for b, (p, _) in enumerate(indices)]).to(device)
        pred_idx = torch.cat([p for p, _ in indices]).to(device)
        target_classes = torch.ones(class_logits.shape[:2], dtype=torch.long, device=device)
        target_classes[batch_idx, pred_idx] = 0
        weight = torch.tensor([1.0, self.no_object_weight], device=device, dtype=class_logits.dtype)
        # weight sum: 1 per matched query, no_object_weight per other query (N_q B - matched)
        num_queries = class_logits.shape[1]
        coefficients = {
            "num_matched": 1.0 - self.no_object_weight,
            "num_samples": self.no_object_weight * num_queries,
        }
        loss_class = _weighted_ce(class_logits.transpose(1, 2), target_classes, weight, coefficients)
        matched = boxes[batch_idx, pred_idx]
        targets = torch.cat([t[j.to(t.device)] for t, (_, j) in zip(target_boxes, indices)]).to(matched)
        loss_bbox = F.l1_loss(matched, targets, reduction="sum") / num_boxes
        if len(matched):
            giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(matched), box_cxcywh_to_xyxy(targets)))
            loss_giou = (1 - giou).sum() / num_boxes
        else:
            loss_giou = boxes.sum() * 0.0
        return {"loss_class": loss_class, "loss_bbox": loss_bbox, "loss_giou": loss_giou}

    def instance_mask_loss(
        self,
        mask_logits: torch.Tensor,
        target_masks: list[torch.Tensor],
        indices: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """Eq. 7: dice + BCE on matched (query, target) pairs and ``lambda_neg`` (dice + BCE) of the others
        against empty masks. Dice and BCE are means over the masks (BCE over all their pixels)."""
        batch, num_queries = mask_logits.shape[:2]
        positives, positive_targets, negatives = [], [], []
        for b, (pred, tgt) in enumerate(indices):
            pred = pred.to(mask_logits.device)
            positives.append(mask_logits[b, pred])
            positive_targets.append(target_masks[b][tgt.to(target_masks[b].device)].to(mask_logits))
            unmatched = torch.ones(num_queries, dtype=torch.bool, device=mask_logits.device)
            unmatched[pred] = False
            negatives.append(mask_logits[b, unmatched])
        pos, pos_t = torch.cat(positives), torch.cat(positive_targets)
        num_pos = _count("num_matched", len(pos), minimum=1)
        loss = dice_loss(pos, pos_t, num_pos) + sigmoid_ce_loss(pos, pos_t, num_pos)
        out = {"loss_instance_positive": loss}
        if self.negative_mask_weight > 0:
            neg = torch.cat(negatives)
            zeros = torch.zeros_like(neg)
            normalizer = active_loss_normalizer()
            num_neg = (
                max(len(neg), 1)
                if normalizer is None
                else normalizer.denominator({"num_samples": num_queries, "num_matched": -1.0}, minimum=1.0)
            )
            out["loss_instance_negative"] = self.negative_mask_weight * (
                dice_loss(neg, zeros, num_neg) + sigmoid_ce_loss(neg, zeros, num_neg)
            )
        return out

    def forward(
        self,
        class_logits: list[torch.Tensor],
        boxes: list[torch.Tensor],
        points: torch.Tensor,
        mask_logits: torch.Tensor,
        semantic_mask_logits: torch.Tensor,
        minimap: torch.Tensor,
        no_target_class_logits: torch.Tensor,
        targets: InstanceVGTargets,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its terms.

        Args:
            class_logits, boxes: per decoder layer ``(B, N_q, 2)`` and ``(B, N_q, 4)``; the last is the output.
            points: prior points ``(B, N_q, 2)``.
            mask_logits: ``(B, N_q, H, W)`` instance masks; semantic_mask_logits: ``(B, H, W)`` global mask.
            minimap: ``(B, h, w)`` attention minimap; no_target_class_logits: ``(B, 2)`` (target, no target).
            targets: :class:`InstanceVGTargets` at ``(H, W)``.
        """
        device = mask_logits.device
        normalizer = active_loss_normalizer()
        if normalizer is None:
            num_boxes = max(_global_count(float(sum(len(b) for b in targets.boxes)), device), 1.0)
        else:
            num_boxes = normalizer.denominator({"num_boxes": 1.0}, minimum=1.0)
        terms: dict[str, torch.Tensor] = {}
        detr = mask_logits.new_zeros(())
        last = len(class_logits) - 1
        last_indices = None
        for layer, (logits, layer_boxes) in enumerate(zip(class_logits, boxes)):
            indices = self.matcher(logits, layer_boxes, points, targets.boxes)
            losses = self.detr_losses(logits, layer_boxes, targets.boxes, indices, num_boxes)
            weights = self.last_weights if layer == last else self.aux_weights
            suffix = "" if layer == last else f"_{layer}"
            for (name, value), weight in zip(losses.items(), weights):
                terms[name + suffix] = value
                detr = detr + weight * value
            if layer == last:
                last_indices = indices
        terms["loss_det"] = self.detr_loss_weight * detr

        instance = self.instance_mask_loss(mask_logits, targets.masks, last_indices)
        terms.update(instance)
        union = torch.stack(
            [
                m.amax(0) if len(m) else m.new_zeros(mask_logits.shape[-2:])
                for m in (t.to(mask_logits) for t in targets.masks)
            ]
        )
        batch = _count("num_samples", len(union))
        terms["loss_global"] = dice_loss(semantic_mask_logits, union, batch) + sigmoid_ce_loss(
            semantic_mask_logits, union, batch
        )
        small = F.interpolate(union[:, None], size=minimap.shape[-2:], mode="nearest")[:, 0]
        terms["loss_minimap"] = self.minimap_loss_weight * (
            dice_loss(minimap, small, batch) + sigmoid_ce_loss(minimap, small, batch)
        )
        terms["loss_mask"] = (
            self.instance_mask_loss_weight * sum(instance.values())
            + self.global_mask_loss_weight * terms["loss_global"]
            + terms["loss_minimap"]
        )
        is_empty = torch.tensor([len(m) == 0 for m in targets.masks], dtype=torch.long, device=device)
        weight = torch.tensor(self.no_target_class_weights, device=device, dtype=no_target_class_logits.dtype)
        coefficients = class_weighted("num_samples", "num_empty", self.no_target_class_weights)
        terms["loss_no_target"] = self.no_target_loss_weight * _weighted_ce(
            no_target_class_logits, is_empty, weight, coefficients
        )
        total = terms["loss_mask"] + terms["loss_det"] + terms["loss_no_target"]
        return total, terms


__all__ = ["InstanceVGCriterion", "InstanceVGTargets", "PointGuidedMatcher", "loss_counts"]
