"""Phrase-aligned matching and the InstAlign training objective (Sec. 3.4-3.7, eq. 5-9 and 13).

Per image with ``M`` ground-truth instances ``s_j`` and ``N`` predictions (score logits, mask logits ``s_hat_i``,
phrase cost ``L_phrase(i)`` of eq. 3):

* eq. 6, matching cost ``C[i, j] = l_score * BCE(p_i, 1) + l_mask * (dice + BCE)(s_hat_i, s_j) + l_phrase * L_phrase(i)``;
* eq. 5, the assignment ``omega*`` minimising ``sum_j C[omega_j, j]`` (Hungarian);
* eq. 7, ``L_inst = sum_j C[omega*_j, j] + sum_{i not in omega*} BCE(p_i, 0)``.

Normalisation (the paper writes plain sums): the matched sum is divided by the number of ground-truth
instances in the batch (Mask2Former's ``num_masks``, averaged over processes under ``torch.distributed``), the
unmatched sum by the number of queries ``B * N``, so that neither ``N`` nor the number of referred objects
rescales the loss. Under an active :class:`~refseg.modeling.loss_normalizer.LossNormalizer` (``train.py``) every
count (matched masks, images, queries) is the step's global one, summed over processes and accumulated
micro-batches (:func:`loss_counts`), so any world size and accumulation give the full batch's gradient.
``instance_supervision="standard"`` drops the phrase term from cost and loss;
``"none"`` skips matching and ``L_inst`` entirely (Table 3a).

* eq. 9, ``L_merged = dice + BCE`` between the merged logits and the union of the instances (mean over images);
* ``L_nt`` = BCE between the no-target logit and ``1[M = 0]`` (mean over images);
* eq. 13, ``L = l_merged L_merged + l_inst L_inst + l_nt L_nt``, plus ``l_merged L_merged + l_inst L_inst`` of every
  intermediate prediction when deep supervision is on.

Masks are compared at the prediction resolution (H/4): targets are area-downsampled, so every pixel counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...modeling.loss_normalizer import active_loss_normalizer
from ...modeling.losses import dice_loss, sigmoid_ce_loss
from ...modeling.matching import hungarian_matcher, pairwise_dice_cost, pairwise_sigmoid_ce_cost


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-downsample (bilinear-upsample) ``(..., H, W)`` masks to ``size``; float output in ``[0, 1]``."""
    masks = masks.float()
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    lead = masks.shape[:-2]
    flat = masks.reshape(-1, 1, *masks.shape[-2:])
    if flat.shape[0] == 0:
        return masks.new_zeros(*lead, *size)
    if masks.shape[-2] >= size[0] and masks.shape[-1] >= size[1]:
        out = F.interpolate(flat, size=size, mode="area")
    else:
        out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size)


def _global_count(count: float, device: torch.device) -> float:
    """``count`` averaged over processes when ``torch.distributed`` is initialised (Mask2Former's num_masks)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        value = torch.tensor([float(count)], device=device)
        torch.distributed.all_reduce(value)
        count = value.item() / torch.distributed.get_world_size()
    return count


def loss_counts(mask_labels: Sequence[torch.Tensor], num_queries: int) -> dict[str, float]:
    """The counts the criterion divides by, from ``B`` instance-mask tensors ``(M_b, H, W)``.

    ``num_samples`` (``B``) and ``num_matched`` (``sum_b min(N, M_b)``: the Hungarian assignment's pairs).
    """
    matched = sum(min(int(num_queries), int(masks.shape[0])) for masks in mask_labels)
    return {"num_samples": float(len(mask_labels)), "num_matched": float(matched)}


def _num_samples(batch: int) -> float:
    """``batch``, or the step's global share under an active loss normaliser."""
    normalizer = active_loss_normalizer()
    return batch if normalizer is None else normalizer.denominator({"num_samples": 1.0})


class PhraseAlignedMatcher(nn.Module):
    """Hungarian matching with the cost of eq. 6 (``lambda_phrase = 0`` gives the standard Mask2Former cost)."""

    def __init__(
        self, lambda_score: float = 2.0, lambda_mask: float = 5.0, lambda_phrase: float = 1.0
    ) -> None:
        super().__init__()
        self.lambda_score = lambda_score
        self.lambda_mask = lambda_mask
        self.lambda_phrase = lambda_phrase

    @torch.no_grad()
    def cost_matrix(
        self,
        score_logits: torch.Tensor,
        mask_logits: torch.Tensor,
        targets: torch.Tensor,
        phrase_cost: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(N, M)`` cost of eq. 6 for one image.

        Args:
            score_logits: ``(N,)``; mask_logits: ``(N, h, w)``; targets: ``(M, h, w)`` in ``[0, 1]``;
            phrase_cost: ``(N,)`` ``L_phrase`` or ``None`` (no phrase term).
        """
        num_targets = targets.shape[0]
        preds = mask_logits.flatten(1).float()
        flat_targets = targets.flatten(1).float()
        cost = self.lambda_score * F.softplus(-score_logits.float())[:, None].expand(-1, num_targets)
        cost = cost + self.lambda_mask * (
            pairwise_dice_cost(preds, flat_targets) + pairwise_sigmoid_ce_cost(preds, flat_targets)
        )
        if phrase_cost is not None and self.lambda_phrase != 0:
            cost = cost + self.lambda_phrase * phrase_cost.float()[:, None]
        return cost

    @torch.no_grad()
    def forward(
        self,
        score_logits: torch.Tensor,
        mask_logits: torch.Tensor,
        targets: Sequence[torch.Tensor],
        phrase_cost: torch.Tensor | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Eq. 5 for a batch: ``(pred_indices, target_indices)`` per image.

        Args:
            score_logits: ``(B, N)``; mask_logits: ``(B, N, h, w)``; targets: ``B`` tensors ``(M_b, h, w)``;
            phrase_cost: ``(B, N)`` or ``None``.
        """
        costs = [
            self.cost_matrix(
                score_logits[b], mask_logits[b], targets[b], None if phrase_cost is None else phrase_cost[b]
            )
            for b in range(len(targets))
        ]
        return hungarian_matcher(costs)


class InstAlignCriterion(nn.Module):
    """The InstAlign objective (eq. 13) with phrase-aligned instance supervision and deep supervision.

    Args:
        instance_supervision: ``"none"``, ``"standard"`` or ``"phrase_aligned"`` (Table 3a).
        lambda_score, lambda_mask, lambda_phrase: eq. 6 weights.
        lambda_merged, lambda_inst, lambda_nt: eq. 13 weights.
    """

    def __init__(
        self,
        instance_supervision: str = "phrase_aligned",
        lambda_score: float = 2.0,
        lambda_mask: float = 5.0,
        lambda_phrase: float = 1.0,
        lambda_merged: float = 5.0,
        lambda_inst: float = 1.0,
        lambda_nt: float = 0.1,
    ) -> None:
        super().__init__()
        self.instance_supervision = instance_supervision
        self.use_phrase = instance_supervision == "phrase_aligned"
        self.lambda_score = lambda_score
        self.lambda_mask = lambda_mask
        self.lambda_phrase = lambda_phrase if self.use_phrase else 0.0
        self.lambda_merged = lambda_merged
        self.lambda_inst = lambda_inst
        self.lambda_nt = lambda_nt
        self.matcher = PhraseAlignedMatcher(lambda_score, lambda_mask, self.lambda_phrase)

    def instance_loss(
        self,
        score_logits: torch.Tensor,
        mask_logits: torch.Tensor,
        targets: Sequence[torch.Tensor],
        phrase_cost: torch.Tensor | None = None,
        indices: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Eq. 7 for a batch (targets already at the mask resolution).

        Returns ``loss_inst`` and its unweighted parts ``loss_score_matched`` (mean BCE(p, 1) over matched),
        ``loss_score_unmatched`` (sum of BCE(p, 0) over unmatched / (B N)), ``loss_mask`` (dice + BCE per
        matched instance) and ``loss_phrase`` (mean ``L_phrase`` of the matched predictions).
        """
        phrase_cost = phrase_cost if self.use_phrase else None
        if indices is None:
            indices = self.matcher(score_logits, mask_logits, targets, phrase_cost)
        batch, num_queries = score_logits.shape
        device = score_logits.device
        batch_idx = torch.cat([torch.full_like(pred, b) for b, (pred, _) in enumerate(indices)]).to(device)
        pred_idx = torch.cat([pred for pred, _ in indices]).to(device)
        matched_targets = torch.cat(
            [targets[b][tgt.to(targets[b].device)] for b, (_, tgt) in enumerate(indices)]
        )
        normalizer = active_loss_normalizer()
        if normalizer is None:
            num_masks = max(_global_count(float(pred_idx.numel()), device), 1.0)
        else:
            num_masks = normalizer.denominator({"num_matched": 1.0}, minimum=1.0)

        matched = torch.zeros(batch, num_queries, dtype=torch.bool, device=device)
        matched[batch_idx, pred_idx] = True
        score_matched = F.softplus(-score_logits[batch_idx, pred_idx]).sum() / num_masks
        score_unmatched = F.softplus(score_logits[~matched]).sum() / (_num_samples(batch) * num_queries)
        matched_masks = mask_logits[batch_idx, pred_idx].flatten(1)
        matched_targets = matched_targets.flatten(1).to(matched_masks.dtype)
        loss_mask = dice_loss(matched_masks, matched_targets, num_masks) + sigmoid_ce_loss(
            matched_masks, matched_targets, num_masks
        )
        if phrase_cost is not None:
            loss_phrase = phrase_cost[batch_idx, pred_idx].sum() / num_masks
        else:
            loss_phrase = score_logits.new_zeros(())
        loss_inst = (
            self.lambda_score * score_matched
            + self.lambda_mask * loss_mask
            + self.lambda_phrase * loss_phrase
            + score_unmatched
        )
        return {
            "loss_inst": loss_inst,
            "loss_score_matched": score_matched,
            "loss_score_unmatched": score_unmatched,
            "loss_mask": loss_mask,
            "loss_phrase": loss_phrase,
        }

    @staticmethod
    def merged_loss(semantic_logits: torch.Tensor, merged_targets: torch.Tensor) -> torch.Tensor:
        """Eq. 9: dice + BCE between ``(B, h, w)`` merged logits and union masks, averaged over images."""
        batch = _num_samples(semantic_logits.shape[0])
        logits, targets = semantic_logits.flatten(1), merged_targets.flatten(1).to(semantic_logits.dtype)
        return dice_loss(logits, targets, batch) + sigmoid_ce_loss(logits, targets, batch)

    @staticmethod
    def no_target_loss(no_target_logits: torch.Tensor, is_no_target: torch.Tensor) -> torch.Tensor:
        """BCE between the no-target logits ``(B,)`` and ``1[M_b = 0]`` (mean over the images)."""
        labels = is_no_target.to(no_target_logits.dtype)
        if active_loss_normalizer() is None:
            return F.binary_cross_entropy_with_logits(no_target_logits, labels)
        loss = F.binary_cross_entropy_with_logits(no_target_logits, labels, reduction="sum")
        return loss / _num_samples(no_target_logits.shape[0])

    def forward(
        self,
        predictions: Sequence[dict[str, torch.Tensor]],
        no_target_logits: torch.Tensor,
        targets: Sequence[torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss (eq. 13).

        Args:
            predictions: one dict per supervised prediction, the final one LAST, each with ``score_logits``
                ``(B, N)``, ``mask_logits`` ``(B, N, h, w)``, ``semantic_mask_logits`` ``(B, h, w)`` and
                ``phrase_cost`` ``(B, N)``; earlier entries are the deep-supervision outputs.
            no_target_logits: ``(B,)``.
            targets: ``B`` tensors ``(M_b, H, W)`` of instance masks (any resolution; ``M_b = 0`` is no-target).

        Returns:
            the total loss and a dict of its terms (final prediction: ``loss_merged``, ``loss_inst``,
            ``loss_nt`` and the parts of ``loss_inst``; ``loss_aux``: the weighted deep-supervision sum).
        """
        final = predictions[-1]
        size = tuple(
            final["mask_logits"].shape[-2:]
        )  # mask_logits (B, N, h, w); B target tensors (n_b, H, W)
        targets = [resize_masks(t.to(final["mask_logits"].device), size) for t in targets]
        merged_targets = torch.stack(
            [t.max(dim=0).values if t.shape[0] > 0 else t.new_zeros(size) for t in targets]
        )
        is_no_target = torch.tensor([t.shape[0] == 0 for t in targets], device=no_target_logits.device)

        def weighted(prediction: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            terms = {"loss_merged": self.merged_loss(prediction["semantic_mask_logits"], merged_targets)}
            total = self.lambda_merged * terms["loss_merged"]
            if self.instance_supervision != "none":
                terms.update(
                    self.instance_loss(
                        prediction["score_logits"],
                        prediction["mask_logits"],
                        targets,
                        prediction.get("phrase_cost"),
                    )
                )
                total = total + self.lambda_inst * terms["loss_inst"]
            return total, terms

        total, loss_dict = weighted(final)
        loss_dict["loss_nt"] = self.no_target_loss(no_target_logits, is_no_target)
        total = total + self.lambda_nt * loss_dict["loss_nt"]
        aux = total.new_zeros(())
        for prediction in predictions[:-1]:
            aux = aux + weighted(prediction)[0]
        loss_dict["loss_aux"] = aux
        return total + aux, loss_dict
