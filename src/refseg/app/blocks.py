"""The Gradio Blocks of ``refseg app``: image + sentence in; overlay, instance table and verdict out.

The model dropdown lists the models fixed at start-up only; uploads reach refseg undecoded and are read
by refseg's image loader; sentences and uploads are bounded by :class:`refseg.app.AppLimits`.
"""

from __future__ import annotations

import inspect
import logging
import os
import random
from collections.abc import Sequence
from typing import Any

from .inference import INSTANCE_COLUMNS, SegmenterCache, segment, synthetic_example
from .limits import AppLimits
from .upload import DATA_URL_PREFIX, data_url_to_file

logger = logging.getLogger(__name__)

__all__ = ["build_app", "launch_app"]

_INTRO = (
    "# refseg: referring segmentation\n"
    "Upload an image (or take a synthetic example), type a sentence, and press **Segment**. The overlay "
    "keeps the objects' own colours: the answer (the merged mask) stays bright with a white outline, "
    "everything else is dimmed; each instance gets a dashed outline, box corners and a numbered label "
    "with its score. The instance table gives boxes in pixels of your image."
)


def _theme_kwargs(gr: Any, function: Any) -> dict[str, Any]:
    """``{"theme": ...}`` with system fonts (no web-font download) where ``function`` takes a theme.

    Gradio 5 takes the theme in ``gr.Blocks(...)``, Gradio 6 in ``launch(...)``.
    """
    if "theme" not in inspect.signature(function).parameters:
        return {}
    fonts = ["ui-sans-serif", "system-ui", "sans-serif"]
    return {"theme": gr.themes.Default(font=fonts, font_mono=["ui-monospace", "monospace"])}


def launch_app(app: Any, host: str = "127.0.0.1", port: int | None = None, block: bool = True) -> Any:
    """Start serving ``app`` on ``host:port``; with ``block=False`` return at once (stop with ``app.close()``).

    Uploads larger than the app's ``max_upload_mb`` are refused by Gradio before they reach refseg.
    """
    import gradio as gr

    limits = getattr(app, "refseg_limits", None) or AppLimits()
    return app.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        quiet=True,
        max_file_size=limits.max_upload_bytes,
        **_theme_kwargs(gr, app.launch),
    )


def _hidden_api(gr: Any) -> dict[str, Any]:
    """Keyword that keeps an event out of the API page (Gradio 6 ``api_visibility``, Gradio 5 ``show_api``)."""
    if "api_visibility" in inspect.signature(gr.Button.click).parameters:
        return {"api_visibility": "undocumented"}
    return {"show_api": False}


def _user_error(gr: Any, message: str) -> Exception:
    """``gr.Error(message)`` for a bad input: shown in the page, without a traceback in the server's log."""
    if "print_exception" in inspect.signature(gr.Error.__init__).parameters:
        return gr.Error(message, print_exception=False)
    return gr.Error(message)


def _upload_image(gr: Any, limits: AppLimits, **kwargs: Any) -> Any:
    """A ``gr.Image`` whose event input is the uploaded file's path, undecoded (refseg reads it).

    Its ``preprocess`` is replaced on the instance: a subclass of a Gradio component would make Gradio
    write a ``.pyi`` stub next to this file.
    """
    image = gr.Image(type="filepath", **kwargs)

    def preprocess(payload: Any) -> str | None:
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):
            try:
                return data_url_to_file(payload.url, image.GRADIO_CACHE, limits)
            except ValueError as err:
                raise _user_error(gr, str(err)) from None
        if payload.path is None:
            raise _user_error(gr, "Upload an image file.")
        return str(payload.path)

    image.preprocess = preprocess
    return image


def build_app(
    models: str | Sequence[str | None] | None = None,
    device: str | None = None,
    image_size: int | None = None,
    limits: AppLimits | None = None,
) -> Any:
    """The ``gradio.Blocks`` app offering ``models`` (folders or Hub ids; default: the demo model).

    The dropdown lists these models only (the first is the default) and nothing else is ever loaded.
    ``image_size`` is the size of the synthetic examples (default: the selected model's input size);
    ``limits`` bounds uploads and sentences (:class:`refseg.app.AppLimits`). Events have API names:
    ``/segment`` and ``/example`` (see ``docs/app.md``).
    """
    import gradio as gr

    limits = limits or AppLimits()
    cache = SegmenterCache(device=device, models=[models] if isinstance(models, str) else models)

    def _example(model: str) -> tuple[Any, str, int]:
        size = image_size
        if size is None:
            try:
                size = cache.get(model)[0].processor.image_processor.size["height"]
            except ValueError as err:
                raise _user_error(gr, str(err)) from None
            except (KeyError, AttributeError, TypeError):
                size = 160
        seed = random.SystemRandom().randrange(2**31)
        image, sentence = synthetic_example(seed, size)
        return image, sentence, seed

    def _segment(
        image: str | None, sentence: str, model: str, threshold: float, mask_threshold: float
    ) -> tuple[Any, list[list[float | int]], str]:
        try:
            result = segment(image, sentence, model, threshold, mask_threshold, cache=cache, limits=limits)
        except ValueError as err:
            raise _user_error(gr, str(err)) from None
        except Exception:  # noqa: BLE001 - logged in full, reported without internals
            logger.exception("refseg app: segmentation failed")
            raise gr.Error("refseg could not answer this request; the server's log says why.") from None
        finally:
            if image and os.path.basename(image).startswith(DATA_URL_PREFIX):
                os.remove(
                    image
                )  # written by the image's preprocess for a data: URL; Gradio does not track it
        return result.overlay, result.instances, result.verdict

    blocks_kwargs = {"delete_cache": (3600, 3600), **_theme_kwargs(gr, gr.Blocks.__init__)}
    with gr.Blocks(title="refseg", analytics_enabled=False, **blocks_kwargs) as app:
        gr.Markdown(_INTRO)
        with gr.Row():
            with gr.Column():
                model_box = gr.Dropdown(
                    choices=cache.labels,
                    value=cache.labels[0],
                    allow_custom_value=False,
                    label="Model",
                    elem_id="model",
                )
                image_in = _upload_image(
                    gr, limits, label="Image", elem_id="image", sources=["upload", "clipboard"], format="png"
                )
                sentence_in = gr.Textbox(
                    label="Sentence",
                    placeholder="the red circle",
                    elem_id="sentence",
                    max_length=limits.max_sentence_chars,
                )
                with gr.Row():
                    example_btn = gr.Button("Synthetic example", elem_id="example")
                    segment_btn = gr.Button("Segment", variant="primary", elem_id="segment")
                with gr.Accordion("Thresholds", open=False):
                    threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="instance score threshold")
                    mask_threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="mask threshold")
                seed_out = gr.Number(label="example seed", interactive=False, visible=False)
            with gr.Column():
                verdict_out = gr.Markdown("Results appear here.", label="verdict", elem_id="verdict")
                overlay_out = gr.Image(
                    type="pil", label="Overlay", elem_id="overlay", interactive=False, format="png"
                )
                table_out = gr.Dataframe(
                    headers=INSTANCE_COLUMNS,
                    datatype=["number"] * len(INSTANCE_COLUMNS),
                    label="Instances",
                    interactive=False,
                    elem_id="instances",
                )
        inputs = [image_in, sentence_in, model_box, threshold, mask_threshold]
        outputs = [overlay_out, table_out, verdict_out]
        gr.on([segment_btn.click, sentence_in.submit], _segment, inputs, outputs, api_name="segment")
        example_btn.click(_example, [model_box], [image_in, sentence_in, seed_out], api_name="example").then(
            _segment, inputs, outputs, api_name="example_segment", **_hidden_api(gr)
        )
    app.queue(max_size=limits.queue_size, default_concurrency_limit=1)
    app.refseg_limits = limits
    return app
