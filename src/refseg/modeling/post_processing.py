"""The one ``post_process_referring_segmentation``: model outputs -> the per-sample contract dicts.

Every model returns, per sample, ``{"mask", "no_target", "target_score", "instances", "semantic_mask"}``
(``docs/pipeline.md``): the union mask of the referred objects (all False when the sample is judged
no-target), the no-target decision, ``1 - P(no target)``, the instances with their boxes, and the
thresholded mask before the no-target decision (what the GRES metrics count, ``docs/metrics.md``).

:class:`ReferringSegmentationPostProcessor` (a base of every refseg image processor) holds the public method: it
checks its arguments once (the outputs' type and fields, ``target_sizes``, the thresholds) and calls the
model's hook :meth:`~ReferringSegmentationPostProcessor._post_process`, which reads the output dataclass's
attributes and does only what is specific to the model. The helpers below are the steps the hooks share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..validation import check_finite_logits, check_probability
from .instance_nms import check_nms_threshold
from .outputs import ReferringSegmentationOutput

__all__ = [
    "MODEL_DEFAULT",
    "ReferringSegmentationPostProcessor",
    "as_referring_segmentation_output",
    "referring_segmentation_result",
    "target_size_list",
    "upsample_logits",
]


class _ModelDefault:
    """The type of :data:`MODEL_DEFAULT`."""

    def __repr__(self) -> str:
        return "MODEL_DEFAULT"


#: ``instance_nms_threshold`` not given: the model's default applies (``None`` itself means "off")
MODEL_DEFAULT: Any = _ModelDefault()

#: how errors name the output fields
_FIELD_NAMES = {
    "pred_masks": "instance mask logits",
    "pred_scores": "instance scores",
    "pred_boxes": "boxes",
    "semantic_mask_logits": "semantic mask logits",
    "no_target_logits": "no-target logits",
    "pred_class_logits": "class logits",
    "no_target_class_logits": "no-target logits",
}


def as_referring_segmentation_output(
    outputs: Any, output_class: type[ReferringSegmentationOutput] = ReferringSegmentationOutput
) -> ReferringSegmentationOutput:
    """``outputs`` as a :class:`~refseg.modeling.outputs.ReferringSegmentationOutput`: the one conversion.

    A ``ReferringSegmentationOutput`` (the model's own subclass, the base class, or any subclass with more
    fields) is returned as it is. A mapping of field names to tensors (a ``dict``, or the plain ``ModelOutput``
    that transformers' pipelines and onnxruntime feeds give, ``docs/export.md``) becomes an ``output_class``
    with those fields. Anything else (a tuple, a tensor) is refused: a tuple does not say which fields it holds.

    Raises:
        TypeError: ``outputs`` is neither; ValueError: the mapping names a field ``output_class`` does not have.
    """
    if isinstance(outputs, ReferringSegmentationOutput):
        return outputs
    if isinstance(outputs, Mapping):
        known = {field.name for field in dataclasses.fields(output_class)}
        unknown = sorted(str(name) for name in outputs if name not in known)
        if unknown:
            raise ValueError(
                f"outputs has fields {unknown} that {output_class.__name__} does not have; its fields are "
                f"{sorted(known)}"
            )
        return output_class(**outputs)
    raise TypeError(
        f"outputs must be the model's output ({output_class.__name__}, a ReferringSegmentationOutput) or a "
        f"mapping of its field names to tensors, got {type(outputs).__name__}"
    )


class ReferringSegmentationPostProcessor:
    """The public ``post_process_referring_segmentation`` of every refseg image processor.

    A model's image processor sets :attr:`output_class`, :attr:`required_output_fields` (and
    :attr:`optional_output_fields`), its default thresholds, and implements :meth:`_post_process`. The fields
    it names are what the pipeline hands to post-processing (``docs/pipeline.md``).
    """

    #: the model's output class; a mapping of field names is converted to it
    output_class: ClassVar[type[ReferringSegmentationOutput]] = ReferringSegmentationOutput
    #: the output fields :meth:`_post_process` reads, each one required
    required_output_fields: ClassVar[tuple[str, ...]] = ("semantic_mask_logits", "no_target_logits")
    #: the output fields :meth:`_post_process` reads when they are present
    optional_output_fields: ClassVar[tuple[str, ...]] = ()
    #: the thresholds used when the caller passes none (``threshold=None`` etc.)
    default_threshold: ClassVar[float] = 0.5
    default_mask_threshold: ClassVar[float] = 0.5
    default_no_target_threshold: ClassVar[float] = 0.5
    default_instance_nms_threshold: ClassVar[float | None] = None

    @classmethod
    def post_processing_fields(cls) -> tuple[str, ...]:
        """Every output field post-processing reads: the required ones, then the optional ones."""
        return cls.required_output_fields + cls.optional_output_fields

    def post_process_referring_segmentation(
        self,
        outputs: ReferringSegmentationOutput | Mapping[str, torch.Tensor],
        target_sizes: Sequence[tuple[int, int]] | torch.Tensor | None = None,
        threshold: float | None = None,
        mask_threshold: float | None = None,
        no_target_threshold: float | None = None,
        instance_nms_threshold: float | None = MODEL_DEFAULT,
        **options: Any,
    ) -> list[dict[str, Any]]:
        """Model outputs -> one dict per sample (``docs/pipeline.md``).

        Args:
            outputs: the model's output (its ``ReferringSegmentationOutput`` subclass, or any
                ``ReferringSegmentationOutput`` holding the fields this model reads), or a mapping of field
                names to tensors (:func:`as_referring_segmentation_output`).
            target_sizes: per sample ``(height, width)`` of the original image; ``None`` keeps the model's
                output canvas (its input size).
            threshold: the instance score threshold (the model's default when ``None``).
            mask_threshold: the pixel probability threshold (the model's default when ``None``).
            no_target_threshold: the no-target probability threshold (the model's default when ``None``).
                The three thresholds must be finite numbers in [0, 1]; a model documents those it does not use.
            instance_nms_threshold: mask NMS of the instance list (:mod:`refseg.modeling.instance_nms`); ``None``
                or 1.0 turns it off; the model's default when not given.
            options: the model's own post-processing options (e.g. InstanceVG's ``mask_merge``).

        Returns:
            ``[{"mask", "no_target", "target_score", "instances", "semantic_mask", ...}]``, see the model's
            :meth:`_post_process`.

        Raises:
            TypeError: ``outputs`` is not a ``ReferringSegmentationOutput`` or a mapping.
            ValueError: a threshold outside [0, 1] (naming it), a missing or non-finite output field, output
                fields or ``target_sizes`` disagreeing on the batch size, a non-positive target size.
        """
        thresholds = {
            "threshold": threshold,
            "mask_threshold": mask_threshold,
            "no_target_threshold": no_target_threshold,
        }
        resolved = self._default_thresholds()
        for name, value in thresholds.items():
            if value is not None:
                resolved[name] = check_probability(value, name)
        if instance_nms_threshold is not MODEL_DEFAULT:
            resolved["instance_nms_threshold"] = check_nms_threshold(instance_nms_threshold)
        prepared = self._checked_outputs(outputs)
        batch = next(iter(self._present_fields(prepared).values())).shape[0]
        sizes = target_size_list(target_sizes, batch, self._default_target_size(prepared))
        return self._post_process(prepared, sizes, **resolved, **options)

    def _post_process(
        self,
        outputs: ReferringSegmentationOutput,
        target_sizes: list[tuple[int, int]],
        threshold: float,
        mask_threshold: float,
        no_target_threshold: float,
        instance_nms_threshold: float | None,
    ) -> list[dict[str, Any]]:
        """The model's part: checked outputs (the fields it reads as float32 CPU tensors, finite, one batch
        size), one ``(height, width)`` per sample and resolved thresholds -> one result dict per sample."""
        raise NotImplementedError(f"{type(self).__name__} must implement _post_process")

    def _default_thresholds(self) -> dict[str, float | None]:
        """The thresholds applied when the caller gives none (the class defaults)."""
        return {
            "threshold": self.default_threshold,
            "mask_threshold": self.default_mask_threshold,
            "no_target_threshold": self.default_no_target_threshold,
            "instance_nms_threshold": self.default_instance_nms_threshold,
        }

    def _default_target_size(self, outputs: ReferringSegmentationOutput) -> tuple[int, int]:
        """``(height, width)`` of the results when ``target_sizes`` is ``None``: the model input size."""
        size = self.size  # the image processor's {"height", "width"}
        return size["height"], size["width"]

    def _present_fields(self, outputs: ReferringSegmentationOutput) -> dict[str, torch.Tensor]:
        """The fields post-processing reads that ``outputs`` has (not ``None``), by name."""
        found = {name: getattr(outputs, name, None) for name in self.post_processing_fields()}
        return {name: value for name, value in found.items() if value is not None}

    def _checked_outputs(self, outputs: Any) -> ReferringSegmentationOutput:
        """``outputs`` converted once, with the fields post-processing reads detached as float32 on the CPU and
        checked: present when required, finite (:meth:`_check_finite`), one batch size."""
        outputs = as_referring_segmentation_output(outputs, self.output_class)
        present = self._present_fields(outputs)
        for name in self.required_output_fields:
            if name not in present:
                raise ValueError(
                    f"the model outputs have no '{name}'; post_process_referring_segmentation needs it"
                )
        # a 0-d no-target logit is a batch of one
        prepared = {
            name: value.detach().float().cpu().reshape(value.shape or (1,)) for name, value in present.items()
        }
        if len({value.shape[0] for value in prepared.values()}) > 1:
            raise ValueError(
                "the model outputs disagree on the batch size: "
                + ", ".join(f"{name} {tuple(value.shape)}" for name, value in prepared.items())
            )
        checked = type(outputs)(**prepared)
        self._check_finite(checked)
        return checked

    def _check_finite(self, outputs: ReferringSegmentationOutput) -> None:
        """Refuse NaN and +-inf in the fields post-processing reads (:func:`refseg.validation.check_finite_logits`):
        an infinite logit would become a probability of exactly 0 or 1 and a confident-looking answer."""
        for name, value in self._present_fields(outputs).items():
            check_finite_logits(value, f"{_FIELD_NAMES.get(name, name)} ({name})")


def target_size_list(
    target_sizes: Sequence[tuple[int, int]] | torch.Tensor | None, batch: int, default: tuple[int, int]
) -> list[tuple[int, int]]:
    """Per sample ``(height, width)`` to post-process to (``default`` for all when ``None``), checked."""
    if target_sizes is None:
        target_sizes = [default] * batch
    if isinstance(target_sizes, torch.Tensor):
        target_sizes = target_sizes.tolist()
    if len(target_sizes) != batch:
        raise ValueError(f"got {len(target_sizes)} target sizes for a batch of {batch}")
    sizes = []
    for b, target in enumerate(target_sizes):
        size = (int(target[0]), int(target[1]))
        if size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"target size {size} of sample {b} must be positive")
        sizes.append(size)
    return sizes


def upsample_logits(logits: torch.Tensor, input_size: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """(h, w) logits -> bilinear to the model input size -> bilinear to ``size`` (a new tensor)."""
    x = logits[None, None]
    if tuple(x.shape[-2:]) != tuple(input_size):
        x = F.interpolate(x, size=input_size, mode="bilinear", align_corners=False)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    else:
        x = x.clone()
    return x[0, 0]


def referring_segmentation_result(
    semantic_mask: torch.Tensor,
    no_target_prob: float,
    no_target_threshold: float,
    instances: Callable[[torch.Tensor], list[dict[str, Any]]],
) -> dict[str, Any]:
    """The contract dict of one sample from its thresholded mask and its no-target probability.

    The sample is no-target when ``no_target_prob > no_target_threshold``: its ``mask`` is then all False and
    ``instances`` is empty; otherwise ``mask`` is ``semantic_mask`` and ``instances(mask)`` lists the instances.
    """
    no_target = no_target_prob > no_target_threshold
    if no_target:
        mask, found = torch.zeros(semantic_mask.shape, dtype=torch.bool), []
    else:
        mask, found = semantic_mask, instances(semantic_mask)
    return {
        "mask": mask,
        "no_target": bool(no_target),
        "target_score": 1.0 - no_target_prob,
        "instances": found,
        "semantic_mask": semantic_mask,
    }
