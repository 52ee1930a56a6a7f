"""Global loss normalisation: micro-batches under the step's normaliser add up to the whole batch's step."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch import nn
from torch.utils.data import DataLoader

from refseg.modeling.loss_normalizer import LossNormalizer, active_loss_normalizer, class_weighted
from refseg.training.distributed import batch_loss_counts, loss_normalized_batches, step_loss_normalizer
from tests.training.equivalence_helpers import MODEL_TYPES, build_model, collate, make_samples

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models run fastest on one thread


@pytest.fixture()
def fresh_accelerate_state():
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def _gradients(model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def _frozen_batchnorm(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()  # the batch then never couples samples: the split is the loss's alone
    return model


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_micro_batches_under_the_step_normaliser_give_the_whole_batch_gradient(model_type):
    """Halves with different instance counts, each divided by the global counts / 2 and averaged as
    Accelerate's accumulation does, give the gradient and loss of the whole batch; local counts do not."""
    model = _frozen_batchnorm(build_model(model_type))
    samples = make_samples(model_type, 4)
    whole, halves = collate(samples), [collate(samples[:2]), collate(samples[2:])]
    full_loss = model(**whole).loss
    full = _gradients(model, full_loss)
    counts = batch_loss_counts(whole, model.config)
    with LossNormalizer(counts) as normalizer:
        assert active_loss_normalizer() is normalizer
        torch.testing.assert_close(model(**whole).loss, full_loss)  # one process, one batch: unchanged
    assert active_loss_normalizer() is None
    split, local, split_loss = 0, 0, 0
    for half in halves:
        with LossNormalizer(counts, scale=2):
            loss = model(**half).loss / 2
        split_loss = split_loss + loss.detach()
        split = split + _gradients(model, loss)
        local = local + _gradients(model, model(**half).loss / 2)
    torch.testing.assert_close(split_loss, full_loss.detach(), rtol=1e-5, atol=1e-6)
    assert float((split - full).norm() / full.norm()) < 1e-5
    # what each micro-batch's own counts give; ReLA's weighted means move only with the halves' foreground
    # shares (every half has as many pixels, cells and samples), hence its smaller gap (8.8e-4 here)
    assert float((local - full).norm() / full.norm()) > (5e-4 if model_type == "rela" else 1e-3)


def test_counts_follow_the_labels():
    samples = make_samples("instancevg", 4)  # 1, 0, 3 and 2 instances
    counts = batch_loss_counts(collate(samples), build_model("instancevg").config)
    assert counts == {"num_samples": 4.0, "num_boxes": 6.0, "num_matched": 6.0, "num_empty": 1.0}
    metris = batch_loss_counts(collate(make_samples("metris", 2)), build_model("metris").config)
    assert metris["num_pixels"] == 2 * 64 * 64 and 0 < metris["num_foreground_pixels"] < 64 * 64
    assert batch_loss_counts({"mask_labels": []}, type("C", (), {"model_type": "other"})()) is None


def test_rela_counts_are_its_three_cross_entropies_class_totals():
    """Pixels, minimap cells and samples, each with its positives (class 1), from the union of the instances."""
    masks = [torch.zeros(0, 8, 8), torch.zeros(2, 8, 8)]
    masks[1][0, :4, :4] = 1  # top-left quarter: minimap cell (0, 0) of a 2x2 minimap
    masks[1][1, 2:4, 2:6] = 1  # overlaps the first: the union counts each pixel once
    config = type("C", (), {"model_type": "rela", "minimap_size": 2})()
    counts = batch_loss_counts({"mask_labels": masks}, config)
    assert counts == {
        "num_pixels": 128.0,
        "num_foreground_pixels": 16.0 + 4.0,
        "num_cells": 8.0,
        "num_foreground_cells": 1.0,
        "num_samples": 2.0,
        "num_no_target": 1.0,
    }


def test_normaliser_denominators():
    normalizer = LossNormalizer({"num_pixels": 100.0, "num_foreground_pixels": 10.0}, scale=4)
    weights = class_weighted("num_pixels", "num_foreground_pixels", (0.9, 1.1))
    assert normalizer.denominator(weights) == pytest.approx((0.9 * 90 + 1.1 * 10) / 4)
    assert LossNormalizer({"num_matched": 0.0}, scale=2).denominator({"num_matched": 1.0}, minimum=1.0) == 0.5
    with pytest.raises(KeyError, match="num_boxes"):
        normalizer.total("num_boxes")
    with pytest.raises(ValueError, match="scale"):
        LossNormalizer({}, scale=0)


def test_steps_keep_accelerates_accumulation_boundaries(fresh_accelerate_state):
    """5 batches, accumulation 2: the step's batches are read ahead, yet gradients sync after batches 2, 4
    and 5 as in a plain loop, and each step's normaliser counts its own batches with scale 2."""
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    model = build_model("presence_plurality")
    loader = accelerator.prepare(
        DataLoader(make_samples("presence_plurality", 5), batch_size=1, collate_fn=collate)
    )
    syncs, samples = [], []
    for _batch, normalizer in loss_normalized_batches(loader, model.config, accelerator, 2):
        with accelerator.accumulate(model):
            syncs.append(accelerator.sync_gradients)
        samples.append((normalizer.totals["num_samples"], normalizer.scale))
    assert syncs == [False, True, False, True, True]
    assert samples == [(2.0, 2.0), (2.0, 2.0), (2.0, 2.0), (2.0, 2.0), (1.0, 2.0)]
    one = step_loss_normalizer([collate(make_samples("presence_plurality", 3))], model.config, accelerator, 1)
    assert one.totals["num_samples"] == 3 and one.scale == 1
