"""TemplateModel's paper-wiring tests: each part of the paper, wired as the paper says (the shared model tester in
``tests/models/test_all_models.py`` covers the common contract).

TODO(paper): one test per equation and switch of the paper, on small hand-computed cases, that fails when the
part is wired wrongly (a swapped input, a wrong sign, a missing term, an ignored switch); check them with
``python scripts/dev/inject_regressions.py``.
"""

from __future__ import annotations

import torch

from refseg.models.template_model import TemplateModelForReferringSegmentation
from refseg.models.template_model.criterion import TemplateModelCriterion


def test_mask_head_is_the_scaled_dot_product_of_pixels_and_sentence():
    visual = torch.tensor([[[[1.0, 0.0]], [[2.0, -1.0]], [[0.0, 3.0]], [[1.0, 1.0]]]])  # (1, C=4, 1, 2)
    sentence = torch.tensor([[1.0, 1.0, 0.0, 2.0]])
    logits = TemplateModelForReferringSegmentation.mask_logits(visual, sentence)
    # pixel 0: (1 + 2 + 0 + 2) / 2, pixel 1: (0 - 1 + 0 + 2) / 2
    torch.testing.assert_close(logits, torch.tensor([[[2.5, 0.5]]]), rtol=0, atol=1e-6)


def test_loss_labels_the_no_target_sample_and_the_union_of_the_instances():
    criterion = TemplateModelCriterion(lambda_mask=1.0, lambda_no_target=2.0)
    first = torch.zeros(2, 2, 2)
    first[0, 0, 0] = first[1, 1, 1] = 1.0  # two instances: the union is the diagonal
    labels = [first, torch.zeros(0, 2, 2)]  # sample 1 refers to nothing
    mask_logits = torch.tensor([[[3.0, -3.0], [-3.0, 3.0]], [[-3.0, -3.0], [-3.0, -3.0]]])
    no_target_logits = torch.tensor([-2.0, 1.0])
    loss, terms = criterion(mask_logits, no_target_logits, labels)
    softplus = torch.nn.functional.softplus
    expected_mask = softplus(torch.tensor(-3.0))  # every pixel of both samples is right with margin 3
    expected_no_target = (softplus(torch.tensor(-2.0)) + softplus(torch.tensor(-1.0))) / 2
    torch.testing.assert_close(terms["loss_mask"], expected_mask)
    torch.testing.assert_close(terms["loss_no_target"], expected_no_target)
    torch.testing.assert_close(loss, expected_mask + 2.0 * expected_no_target)
