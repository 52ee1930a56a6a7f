"""The Gradio Blocks of ``refseg app``: image + sentence in; overlay, instance table and verdict out."""

from __future__ import annotations

import inspect
import random
from typing import Any

from .inference import DEMO_MODEL, INSTANCE_COLUMNS, SegmenterCache, segment, synthetic_example

__all__ = ["build_app", "launch_app"]

_INTRO = (
    "# refseg: referring segmentation\n"
    "Upload an image (or take a synthetic example), type a sentence, and press **Segment**. The overlay "
    "keeps the objects' own colours: the answer (the merged mask) stays bright with a white outline, "
    "everything else is dimmed; each instance gets a dashed outline, box corners and a numbered label "
    "with its score."
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
    """Start serving ``app`` on ``host:port``; with ``block=False`` return at once (stop with ``app.close()``)."""
    import gradio as gr

    return app.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        quiet=True,
        **_theme_kwargs(gr, app.launch),
    )


def build_app(model: str | None = None, device: str | None = None, image_size: int | None = None) -> Any:
    """The ``gradio.Blocks`` app; ``model`` is the picker's initial entry (default: the demo model).

    ``image_size`` is the size of the synthetic examples (default: the loaded model's input size).
    """
    import gradio as gr

    cache = SegmenterCache(device=device)
    initial = model or DEMO_MODEL

    def _example(model_choice: str) -> tuple[Any, str, int]:
        size = image_size
        if size is None:
            try:
                size = cache.get(model_choice)[0].processor.image_processor.size["height"]
            except (ValueError, KeyError, AttributeError, TypeError):
                size = 160
        seed = random.SystemRandom().randrange(2**31)
        image, sentence = synthetic_example(seed, size)
        return image, sentence, seed

    def _segment(image, sentence, model_choice, threshold, mask_threshold):
        try:
            result = segment(image, sentence, model_choice, threshold, mask_threshold, cache=cache)
        except ValueError as err:
            raise gr.Error(str(err)) from None
        return result.overlay, result.instances, result.verdict

    with gr.Blocks(title="refseg", analytics_enabled=False, **_theme_kwargs(gr, gr.Blocks.__init__)) as app:
        gr.Markdown(_INTRO)
        with gr.Row():
            with gr.Column():
                model_box = gr.Dropdown(
                    choices=[DEMO_MODEL] + ([model] if model else []),
                    value=initial,
                    allow_custom_value=True,
                    label="Model: the bundled demo model, a local folder or a Hub id",
                    elem_id="model",
                )
                image_in = gr.Image(
                    type="pil", label="Image", elem_id="image", sources=["upload", "clipboard"]
                )
                sentence_in = gr.Textbox(label="Sentence", placeholder="the red circle", elem_id="sentence")
                with gr.Row():
                    example_btn = gr.Button("Synthetic example", elem_id="example")
                    segment_btn = gr.Button("Segment", variant="primary", elem_id="segment")
                with gr.Accordion("Thresholds", open=False):
                    threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="instance score threshold")
                    mask_threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="mask threshold")
                seed_out = gr.Number(label="example seed", interactive=False, visible=False)
            with gr.Column():
                verdict_out = gr.Markdown("Results appear here.", elem_id="verdict")
                overlay_out = gr.Image(
                    type="pil", label="Overlay", elem_id="overlay", interactive=False, format="png"
                )
                table_out = gr.Dataframe(
                    headers=INSTANCE_COLUMNS,
                    datatype=["number"] * len(INSTANCE_COLUMNS),
                    label="Instances (boxes in pixels of the original image)",
                    interactive=False,
                    elem_id="instances",
                )
        inputs = [image_in, sentence_in, model_box, threshold, mask_threshold]
        outputs = [overlay_out, table_out, verdict_out]
        segment_btn.click(_segment, inputs, outputs)
        sentence_in.submit(_segment, inputs, outputs)
        example_btn.click(_example, [model_box], [image_in, sentence_in, seed_out]).then(
            _segment, inputs, outputs
        )
    return app
