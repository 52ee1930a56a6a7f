"""What the web app computes, without Gradio: load a pipeline, segment, and describe the answer.

Everything goes through the library: the ``referring-segmentation`` pipeline (processor, model and
post-processing), :func:`refseg.visualization.draw_result` for the overlay and the synthetic scene
generator for the examples. The Gradio layer (:mod:`refseg.app.blocks`) only wires these to widgets.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import PIL.Image

__all__ = [
    "DEMO_MODEL",
    "AppResult",
    "SegmenterCache",
    "instance_rows",
    "segment",
    "synthetic_example",
    "verdict_text",
]

#: the model picker's entry for the demo model bundled with refseg
DEMO_MODEL = "refseg demo model (bundled)"
#: column names of the instance table
INSTANCE_COLUMNS = ["#", "score", "xmin", "ymin", "xmax", "ymax"]


def _model_key(model: str | None) -> str | None:
    model = (model or "").strip()
    return None if model in ("", DEMO_MODEL) else model


class SegmenterCache:
    """Pipelines by model (folder or Hub id; ``None`` or :data:`DEMO_MODEL` is the bundled demo model).

    Keeps the ``max_models`` most recently used pipelines; safe to share between request threads.
    """

    def __init__(self, device: str | None = None, max_models: int = 2) -> None:
        self.device = device
        self.max_models = max_models
        self._pipelines: dict[str | None, tuple[Any, str]] = {}
        self._lock = threading.Lock()

    def get(self, model: str | None) -> tuple[Any, str]:
        """``(pipeline, resolved path)`` for ``model``, loading it on first use."""
        from ..commands._common import load_pipeline

        key = _model_key(model)
        with self._lock:
            if key in self._pipelines:
                self._pipelines[key] = self._pipelines.pop(key)  # most recently used last
                return self._pipelines[key]
            try:
                loaded = load_pipeline(key, self.device)
            except SystemExit as err:  # load_pipeline's message for a missing demo model
                raise ValueError(str(err)) from None
            except Exception as err:  # noqa: BLE001 - any loading failure is shown to the user
                raise ValueError(f"could not load the model {key!r}: {err}") from err
            self._pipelines[key] = loaded
            while len(self._pipelines) > self.max_models:
                self._pipelines.pop(next(iter(self._pipelines)))
            return loaded


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
        words = ", ".join(f"'{w}'" for w in unknown)
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
) -> AppResult:
    """Run the pipeline of ``model`` on ``(image, sentence)`` and build what the app displays.

    Raises ValueError with a message for the user when the image or the sentence is missing or the
    model cannot be loaded.
    """
    from ..commands._demo_notice import demo_model_notice
    from ..oov import unknown_words
    from ..visualization import draw_result, to_rgb

    if image is None:
        raise ValueError("Upload an image or pick a synthetic example first.")
    sentence = (sentence or "").strip()
    if not sentence:
        raise ValueError("Type a sentence that describes what to segment, e.g. 'the red circle'.")
    image = to_rgb(image)
    segmenter, path = (cache or SegmenterCache()).get(model)
    result = segmenter(image, sentence, threshold=threshold, mask_threshold=mask_threshold)
    tokenizer = segmenter.processor.tokenizer
    unknown = unknown_words(tokenizer, sentence)
    notice = demo_model_notice(path, tokenizer, image)
    scale = max(1, round(480 / max(image.size)))
    overlay = draw_result(image, result, sentence, scale=scale)
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
