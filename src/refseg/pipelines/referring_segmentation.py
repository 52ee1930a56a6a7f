"""The ``referring-segmentation`` pipeline: an image and a sentence in; the referred objects out.

Built like transformers' vision pipelines: ``preprocess`` loads the image, records its size and
runs the model's processor at its fixed input size (so ``batch_size > 1`` stacks without padding);
``_forward`` runs the model; ``postprocess`` calls the processor's ``post_process_referring_segmentation``
and converts masks to PIL images (``docs/pipeline.md``). Every input is checked before any model runs:
sentences, images, thresholds, ``max_length``; the model itself when the pipeline is built.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers import Pipeline

from ..image_utils import (
    DEFAULT_URL_TIMEOUT,
    check_image_input,
    check_single_image,
    exif_orientation,
    load_image,
)
from ..modeling.instance_nms import check_nms_threshold
from ..validation import check_max_length, check_probability, check_sentences, text_position_limit
from .loading import check_refseg_model_type

__all__ = ["ReferringSegmentationPipeline"]

#: ``instance_nms_threshold`` not given: the processor's per-model default applies (``None`` means "off")
_DEFAULT = object()


def _mask_to_pil(mask: torch.Tensor) -> PIL.Image.Image:
    return PIL.Image.fromarray(mask.to(torch.uint8).mul(255).numpy(), mode="L")


def _is_image(x: Any) -> bool:
    return isinstance(x, str | Path | bytes | PIL.Image.Image | np.ndarray | torch.Tensor)


def _warn_if_sideways(image: PIL.Image.Image, what: str) -> None:
    """A PIL image the caller opened is used as stored; say so when its EXIF says it is displayed turned."""
    orientation = exif_orientation(image)
    if orientation != 1:
        warnings.warn(
            f"{what} carries EXIF Orientation={orientation} and is segmented as stored, not as displayed; "
            "pass its path (refseg applies the orientation) or PIL.ImageOps.exif_transpose(image)",
            UserWarning,
            stacklevel=5,
        )


class ReferringSegmentationPipeline(Pipeline):
    """Segment every object a sentence refers to (none, one or several).

    Example::

        >>> import refseg
        >>> from transformers import pipeline
        >>> segmenter = pipeline("referring-segmentation", model=refseg.demo_model_path())
        >>> result = segmenter("scene.png", "all red circles")
        >>> result["no_target"], result["score"], len(result["instances"])

    Inputs: ``(image, text)``; lists ``(images, texts)`` of equal length; a ``{"image", "text"}`` dict
    or a list of them. Images are paths, ``http(s)://`` or ``data:`` URLs or encoded bytes (decoded by
    ``refseg.image_utils.load_image``: allowed formats only, EXIF orientation applied, pixel cap), PIL images
    (used as stored), numpy (H, W, C) arrays or (C, H, W) tensors.

    Returns, per input, ``{"mask": PIL "L" image (union of the referred objects), "score": float
    (probability that something is referred to), "no_target": bool, "instances": [{"mask": PIL "L"
    image, "box": {"xmin", "ymin", "xmax", "ymax"}, "score": float}]}``.

    Parameters: ``threshold`` (instance score threshold), ``mask_threshold``, ``no_target_threshold``
    (each model's processor has its defaults: 0.5, and 0.7 for InstanceVG's score threshold as released), all finite numbers in [0, 1]; ``timeout`` (seconds for the whole
    download of a URL, default ``refseg.image_utils.DEFAULT_URL_TIMEOUT``); ``max_length`` (tokens per sentence,
    at most what the text encoder can embed; longer sentences are truncated to it by default);
    ``instance_nms_threshold`` (mask NMS of the instance list, ``refseg.modeling.instance_nms``: ``None`` or 1.0
    off, default per model: 0.5 for InstAlign, off for the others).

    Raises:
        ValueError: on bad inputs (empty or blank sentences, empty lists, images with 4 or more
            dimensions or non-finite pixels, thresholds outside [0, 1]), naming the problem.
        FileNotFoundError: ``"no such image file: PATH"`` for a missing image path or a directory.
    """

    _load_processor = True
    _load_image_processor = None
    _load_feature_extractor = False
    _load_tokenizer = None

    def __init__(self, *args, **kwargs):
        model = kwargs.get("model", args[0] if args else None)
        config = getattr(model, "config", None)
        check_refseg_model_type(getattr(config, "model_type", None), f"the model {type(model).__name__}")
        text_config = getattr(config, "text_config", None)
        # set before Pipeline.__init__, which checks the call parameters (e.g. max_length) given here
        self.text_position_limit = None if text_config is None else text_position_limit(text_config)
        super().__init__(*args, **kwargs)
        if self.processor is None or not hasattr(self.processor, "post_process_referring_segmentation"):
            raise ValueError(
                "the referring-segmentation pipeline needs a refseg processor with "
                "post_process_referring_segmentation (e.g. InstAlignProcessor)"
            )

    def _sanitize_parameters(
        self,
        threshold: float | None = None,
        mask_threshold: float | None = None,
        no_target_threshold: float | None = None,
        timeout: float | None = None,
        max_length: int | None = None,
        instance_nms_threshold: Any = _DEFAULT,
        **kwargs,
    ):
        if kwargs:
            raise ValueError(f"unknown arguments for the referring-segmentation pipeline: {sorted(kwargs)}")
        preprocess_params: dict[str, Any] = {}
        if timeout is not None:
            if (
                isinstance(timeout, bool)
                or not isinstance(timeout, int | float)
                or not 0 < timeout < float("inf")
            ):
                raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
            preprocess_params["timeout"] = float(timeout)
        if max_length is not None:
            preprocess_params["max_length"] = check_max_length(
                max_length, self.text_position_limit, "the model's text encoder"
            )
        postprocess_params = {}
        for name, value in (
            ("threshold", threshold),
            ("mask_threshold", mask_threshold),
            ("no_target_threshold", no_target_threshold),
        ):
            if value is not None:
                postprocess_params[name] = check_probability(value, name)
        # None turns it off, so only a missing value means "the model's default"
        if instance_nms_threshold is not _DEFAULT:
            postprocess_params["instance_nms_threshold"] = check_nms_threshold(instance_nms_threshold)
        return preprocess_params, {}, postprocess_params

    def __call__(self, image: Any, text: str | list[str] | None = None, **kwargs) -> dict | list[dict]:
        """Run on one ``(image, text)`` pair, lists of images and texts, or ``{"image", "text"}`` dicts."""
        inputs, single = self._normalize_inputs(image, text)
        results = super().__call__(inputs, **kwargs)
        return results[0] if single else results

    @staticmethod
    def _normalize_inputs(image: Any, text: Any) -> tuple[list[dict], bool]:
        if isinstance(image, list | tuple) and not image:
            raise ValueError("got an empty list of inputs; pass at least one (image, text) pair")
        if isinstance(image, dict):
            pairs, single = [image], True
        elif isinstance(image, list | tuple) and all(isinstance(x, dict) for x in image):
            pairs, single = list(image), False
        elif _is_image(image):
            if not isinstance(text, str):
                raise ValueError(
                    "for a single image, pass one sentence as a string: pipe(image, 'the red circle')"
                )
            pairs, single = [{"image": image, "text": text}], True
        elif isinstance(image, list | tuple):
            if isinstance(text, list | tuple) and not text:
                raise ValueError("got an empty list of sentences; pass one sentence per image")
            if isinstance(text, str) or text is None or len(text) != len(image):
                n_text = "no" if text is None else (1 if isinstance(text, str) else len(text))
                raise ValueError(
                    f"got {len(image)} images and {n_text} sentences; pass one sentence per image"
                )
            pairs, single = [{"image": i, "text": t} for i, t in zip(image, text)], False
        else:
            raise ValueError(
                f"unsupported input {type(image).__name__}; pass (image, text), lists of images and texts, "
                "or {'image': ..., 'text': ...} dicts"
            )
        for k, pair in enumerate(pairs):
            if set(pair) != {"image", "text"}:
                raise ValueError(
                    f"input {k} must have exactly the keys 'image' and 'text', got {sorted(pair)}"
                )
            if not isinstance(pair["text"], str):
                raise ValueError(f"input {k}: text must be a string, got {type(pair['text']).__name__}")
            check_sentences(pair["text"], f"input {k} text")
            if not isinstance(pair["image"], str | Path | bytes):
                check_single_image(pair["image"], f"input {k} image")
                check_image_input(pair["image"], f"input {k} image")
                if isinstance(pair["image"], PIL.Image.Image):
                    _warn_if_sideways(pair["image"], f"input {k} image")
        return pairs, single

    def preprocess(
        self, inputs: dict, timeout: float | None = DEFAULT_URL_TIMEOUT, max_length: int | None = None
    ) -> dict:
        image = inputs["image"]
        if isinstance(image, str | Path | bytes):  # refseg's one loader: formats, pixel cap, EXIF orientation
            image = load_image(image, timeout=timeout)
        height, width = self.processor.image_processor.image_size(image)
        if max_length is None:  # never hand the text encoder more tokens than it has positions
            tokenizer_limit = getattr(self.processor.tokenizer, "model_max_length", None)
            if self.text_position_limit is not None and not (
                isinstance(tokenizer_limit, int) and tokenizer_limit <= self.text_position_limit
            ):
                max_length = self.text_position_limit
        model_inputs = self.processor(
            images=image, text=inputs["text"], return_tensors="pt", truncation=True, max_length=max_length
        )
        model_inputs = {k: v for k, v in model_inputs.items() if k != "mask_labels"}
        model_inputs["pixel_values"] = model_inputs["pixel_values"].to(self.dtype)
        model_inputs["target_size"] = torch.tensor([[height, width]])
        return model_inputs

    def _forward(self, model_inputs: dict) -> dict:
        target_size = model_inputs.pop("target_size")
        outputs = self.model(**model_inputs)
        # the fields post-processing declares it reads (the image processor's post_processing_fields), not every
        # tensor of the output; flat, so that transformers' batching splits them per sample
        wanted = self.processor.image_processor.post_processing_fields()
        result = {name: value for name, value in outputs.items() if name in wanted}
        result["target_size"] = target_size
        return result

    def postprocess(self, model_outputs: dict, **thresholds: float) -> dict:
        """One result dict; the thresholds the caller gave go to the processor, which has each model's defaults."""
        fields = {name: value for name, value in model_outputs.items() if name != "target_size"}
        processed = self.processor.post_process_referring_segmentation(
            fields, target_sizes=model_outputs["target_size"].tolist(), **thresholds
        )[0]
        instances = []
        for inst in processed["instances"]:
            x0, y0, x1, y1 = (int(round(float(v))) for v in inst["box"])
            instances.append(
                {
                    "mask": _mask_to_pil(inst["mask"]),
                    "box": {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1},
                    "score": float(inst["score"]),
                }
            )
        return {
            "mask": _mask_to_pil(processed["mask"]),
            "score": float(processed["target_score"]),
            "no_target": bool(processed["no_target"]),
            "instances": instances,
        }
