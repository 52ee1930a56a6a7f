"""Post-processing refuses NaN, +inf and -inf model outputs of every model instead of a confident answer."""

from __future__ import annotations

import pytest
import torch
from transformers.utils import ModelOutput

from refseg.models.instalign import InstAlignImageProcessor
from refseg.models.instancevg import InstanceVGImageProcessor
from refseg.models.metris import MetrisImageProcessor
from refseg.models.presence_plurality import PresencePluralityImageProcessor

B, Q, H = 2, 3, 8


def _outputs(**extra: torch.Tensor) -> dict[str, torch.Tensor]:
    fields = {
        "pred_masks": torch.zeros(B, Q, H, H),
        "pred_scores": torch.zeros(B, Q),
        "pred_boxes": torch.full((B, Q, 4), 0.5),
        "semantic_mask_logits": torch.zeros(B, H, H),
        "no_target_logits": torch.zeros(B),
    }
    fields.update(extra)
    return fields


PROCESSORS = {
    "instalign": lambda: InstAlignImageProcessor(size=H),
    "instancevg": lambda: InstanceVGImageProcessor(size=H),
    "metris": lambda: MetrisImageProcessor(size=H),
    "presence_plurality": lambda: PresencePluralityImageProcessor(size=H),
}
READS = {  # the fields each model's post-processing reads
    "instalign": ["pred_masks", "pred_scores", "semantic_mask_logits", "no_target_logits"],
    "instancevg": ["pred_masks", "pred_scores", "pred_boxes", "semantic_mask_logits", "no_target_logits"],
    "metris": ["semantic_mask_logits", "no_target_logits"],
    "presence_plurality": ["semantic_mask_logits", "no_target_logits"],
}
CASES = [(model, field) for model, fields in READS.items() for field in fields]


@pytest.mark.parametrize(
    "value, kind", [(float("inf"), r"\+inf"), (float("-inf"), "-inf"), (float("nan"), "NaN")]
)
@pytest.mark.parametrize("model, field", CASES)
def test_every_non_finite_output_is_refused(model: str, field: str, value: float, kind: str) -> None:
    processor = PROCESSORS[model]()
    outputs = _outputs()
    if model == "metris" and field == "no_target_logits" and value == float("-inf"):
        outputs[field] = torch.tensor([value, 0.0])  # -inf for all samples is METRIS's "no classifier"
    else:
        outputs[field].reshape(-1)[0] = value
    with pytest.raises(ValueError, match=rf"the model produced {kind} .*\({field}\).* not finite"):
        processor.post_process_referring_segmentation(ModelOutput(**outputs))


def test_finite_outputs_still_give_results() -> None:
    for model, make in PROCESSORS.items():
        results = make().post_process_referring_segmentation(ModelOutput(**_outputs()))
        assert len(results) == B, model


def test_instancevg_two_way_logits_are_checked_too() -> None:
    outputs = _outputs(pred_class_logits=torch.zeros(B, Q, 2), no_target_class_logits=torch.zeros(B, 2))
    outputs["no_target_class_logits"][1, 0] = float("inf")
    with pytest.raises(ValueError, match=r"\+inf no-target logits \(no_target_class_logits\)"):
        PROCESSORS["instancevg"]().post_process_referring_segmentation(ModelOutput(**outputs))


def test_metris_without_no_target_classifier_keeps_its_minus_inf() -> None:
    """METRIS without the classifier reports -inf for every sample: documented, never no-target."""
    outputs = _outputs(no_target_logits=torch.full((B,), float("-inf")))
    results = PROCESSORS["metris"]().post_process_referring_segmentation(ModelOutput(**outputs))
    assert [r["no_target"] for r in results] == [False, False]
    assert [r["target_score"] for r in results] == [1.0, 1.0]
