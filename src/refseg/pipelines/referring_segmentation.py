"""The ``referring-segmentation`` pipeline: an image and a sentence in; the referred objects out.

Built like transformers' vision pipelines (hf_conventions.md section 3.4): ``preprocess`` loads the
image, records its size and runs the model's processor at its fixed input size (so ``batch_size > 1``
stacks without padding); ``_forward`` runs the model; ``postprocess`` calls the processor's
``post_process_referring_segmentation`` and converts masks to PIL images (DESIGN.md, "Pipeline").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers import Pipeline
from transformers.image_utils import load_image

__all__ = ["ReferringSegmentationPipeline"]

_OUTPUT_KEYS = ("pred_masks", "pred_scores", "semantic_mask_logits", "no_target_logits")


def _mask_to_pil(mask: torch.Tensor) -> PIL.Image.Image:
    return PIL.Image.fromarray(mask.to(torch.uint8).mul(255).numpy(), mode="L")


def _is_image(x: Any) -> bool:
    return isinstance(x, str | Path | PIL.Image.Image | np.ndarray | torch.Tensor)


class ReferringSegmentationPipeline(Pipeline):
    """Segment every object a sentence refers to (none, one or several).

    Example::

        >>> import refseg
        >>> from transformers import pipeline
        >>> segmenter = pipeline("referring-segmentation", model=refseg.demo_model_path())
        >>> result = segmenter("scene.png", "all red circles")
        >>> result["no_target"], result["score"], len(result["instances"])

    Inputs: ``(image, text)``; lists ``(images, texts)`` of equal length; a ``{"image", "text"}`` dict
    or a list of them. Images are paths/URLs, PIL images, numpy (H, W, C) arrays or (C, H, W) tensors.

    Returns, per input, ``{"mask": PIL "L" image (union of the referred objects), "score": float
    (probability that something is referred to), "no_target": bool, "instances": [{"mask": PIL "L"
    image, "box": {"xmin", "ymin", "xmax", "ymax"}, "score": float}]}``.

    Parameters: ``threshold`` (instance score threshold, 0.5), ``mask_threshold`` (0.5),
    ``no_target_threshold`` (0.5), ``timeout`` (seconds for fetching URLs).
    """

    _load_processor = True
    _load_image_processor = None
    _load_feature_extractor = False
    _load_tokenizer = None

    def __init__(self, *args, **kwargs):
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
        **kwargs,
    ):
        if kwargs:
            raise ValueError(f"unknown arguments for the referring-segmentation pipeline: {sorted(kwargs)}")
        preprocess_params = {} if timeout is None else {"timeout": timeout}
        postprocess_params = {}
        for name, value in (
            ("threshold", threshold),
            ("mask_threshold", mask_threshold),
            ("no_target_threshold", no_target_threshold),
        ):
            if value is not None:
                postprocess_params[name] = float(value)
        return preprocess_params, {}, postprocess_params

    def __call__(self, image: Any, text: str | list[str] | None = None, **kwargs) -> dict | list[dict]:
        """Run on one ``(image, text)`` pair, lists of images and texts, or ``{"image", "text"}`` dicts."""
        inputs, single = self._normalize_inputs(image, text)
        results = super().__call__(inputs, **kwargs)
        return results[0] if single else results

    @staticmethod
    def _normalize_inputs(image: Any, text: Any) -> tuple[list[dict], bool]:
        if isinstance(image, dict):
            pairs, single = [image], True
        elif isinstance(image, list | tuple) and image and all(isinstance(x, dict) for x in image):
            pairs, single = list(image), False
        elif _is_image(image):
            if not isinstance(text, str):
                raise ValueError(
                    "for a single image, pass one sentence as a string: pipe(image, 'the red circle')"
                )
            pairs, single = [{"image": image, "text": text}], True
        elif isinstance(image, list | tuple):
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
        return pairs, single

    def preprocess(self, inputs: dict, timeout: float | None = None) -> dict:
        image = inputs["image"]
        if isinstance(image, str | Path):
            image = load_image(str(image), timeout=timeout)
        height, width = self.processor.image_processor.image_size(image)
        model_inputs = self.processor(images=image, text=inputs["text"], return_tensors="pt")
        model_inputs = {k: v for k, v in model_inputs.items() if k != "mask_labels"}
        model_inputs["pixel_values"] = model_inputs["pixel_values"].to(self.dtype)
        model_inputs["target_size"] = torch.tensor([[height, width]])
        return model_inputs

    def _forward(self, model_inputs: dict) -> dict:
        target_size = model_inputs.pop("target_size")
        outputs = self.model(**model_inputs)
        # models without instance queries (e.g. METRIS) have no pred_masks / pred_scores
        result = {key: outputs[key] for key in _OUTPUT_KEYS if key in outputs}
        result["target_size"] = target_size
        return result

    def postprocess(
        self,
        model_outputs: dict,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        no_target_threshold: float = 0.5,
    ) -> dict:
        processed = self.processor.post_process_referring_segmentation(
            model_outputs,
            target_sizes=model_outputs["target_size"].tolist(),
            threshold=threshold,
            mask_threshold=mask_threshold,
            no_target_threshold=no_target_threshold,
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
