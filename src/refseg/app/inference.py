"""What the web app computes, without Gradio: load a pipeline, segment, and describe the answer.

Everything goes through the library: the ``referring-segmentation`` pipeline (processor, model and
post-processing), :func:`refseg.visualization.draw_result` for the overlay and the synthetic scene
generator for the examples. The Gradio layer (:mod:`refseg.app.blocks`) only wires these to widgets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import PIL.Image

from .limits import AppLimits, caption_text, check_sentence
from .models import DEMO_MODEL, SegmenterCache
from .upload import read_upload

__all__ = [
    "DEMO_MODEL",
    "INSTANCE_COLUMNS",
    "AppLimits",
    "AppResult",
    "SegmenterCache",
    "instance_rows",
    "segment",
    "synthetic_example",
    "verdict_text",
]

#: column names of the instance table
INSTANCE_COLUMNS = ["#", "score", "xmin", "ymin", "xmax", "ymax"]
#: how many unknown words the verdict names (the rest are counted)
MAX_UNKNOWN_SHOWN = 10


@dataclass
class AppResult:
    """One answer as the app shows it: the overlay, the instance table and the verdict (Markdown)."""

    overlay: PIL.Image.Image
    instances: list[list[float | int]]
    verdict: str
    raw: dict = field(repr=False, default_factory=dict)


def instance_rows(result: dict) -> list[list[float | int]]:
    """The pipeline result's instances as table rows ``[#, score, xmin, ymin, xmax, ymax]``."""
    rows = []
    for k, inst in enumerate(result["instances"], start=1):
        box = inst["box"]
        rows.append([k, round(float(inst["score"]), 3), box["xmin"], box["ymin"], box["xmax"], box["ymax"]])
    return rows


def verdict_text(result: dict, unknown: list[str] | None = None, notice: str | None = None) -> str:
    """Markdown: the no-target verdict, the number of instances, and warnings about the input."""
    score = float(result["score"])
    if result["no_target"]:
        lines = [f"**No target**: the sentence refers to nothing in this image (p(target) = {score:.2f})."]
    else:
        n = len(result["instances"])
        lines = [f"**Target found**: {n} instance(s), p(target) = {score:.2f}."]
    if unknown:
        words = ", ".join(f"'{w}'" for w in unknown[:MAX_UNKNOWN_SHOWN])
        more = len(unknown) - MAX_UNKNOWN_SHOWN
        words += f" and {more} more" if more > 0 else ""
        lines.append(f"Unknown to this model's tokenizer (read as an unknown token): {words}.")
    if notice:
        lines.append(notice)
    return "\n\n".join(lines)


def segment(
    image: Any,
    sentence: str | None,
    model: str | None = None,
    threshold: float = 0.5,
    mask_threshold: float = 0.5,
    cache: SegmenterCache | None = None,
    limits: AppLimits | None = None,
) -> AppResult:
    """Run the pipeline of ``model`` on ``(image, sentence)`` and build what the app displays.

    ``image`` is a PIL image, a numpy array or the path of an uploaded file (read with refseg's image
    loader after the size check). ``model`` is one of ``cache``'s configured models (default: its
    first). Raises ValueError with a message for the user when the image or the sentence is missing
    or over a limit of ``limits``, or the model is not offered or cannot be loaded.
    """
    from ..demo_notice import demo_model_notice
    from ..out_of_vocabulary import unknown_words
    from ..visualization import draw_result, to_rgb

    limits = limits or AppLimits()
    if image is None:
        raise ValueError("Upload an image or pick a synthetic example first.")
    sentence = check_sentence(sentence, limits)
    cache = cache or SegmenterCache()
    cache.resolve(model)  # refuse a model that is not offered before reading the image
    image = read_upload(image, limits) if isinstance(image, str | os.PathLike) else to_rgb(image)
    segmenter, path = cache.get(model)
    result = segmenter(image, sentence, threshold=threshold, mask_threshold=mask_threshold)
    tokenizer = segmenter.processor.tokenizer
    unknown = unknown_words(tokenizer, sentence)
    notice = demo_model_notice(path, tokenizer, image)
    scale = max(1, round(480 / max(image.size)))
    overlay = draw_result(image, result, caption_text(sentence, limits), scale=scale)
    return AppResult(overlay, instance_rows(result), verdict_text(result, unknown, notice), result)


def synthetic_example(seed: int, image_size: int = 160) -> tuple[PIL.Image.Image, str]:
    """A fresh synthetic scene and one of its sentences (single, multi-target or no-target) for ``seed``."""
    from ..data import synthetic_scenes

    rows = synthetic_scenes(
        num_images=1,
        seed=int(seed),
        image_size=image_size,
        sentences_per_image=3,
        split="app",
        kind_weights={"single": 1.0, "multi": 1.0, "no_target": 1.0},
    )
    row = rows[int(seed) % len(rows)]
    return row["image"].convert("RGB"), row["sentence"]
