"""The app's prediction function (no Gradio, no browser): it reports exactly what the pipeline returns."""

from __future__ import annotations

import sys

import numpy as np
import PIL.Image
import pytest

from refseg.app.inference import (
    DEMO_MODEL,
    SegmenterCache,
    instance_rows,
    segment,
    synthetic_example,
    verdict_text,
)
from refseg_cli import main
from tests.processing_helpers import save_tiny_instalign


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(save_tiny_instalign(tmp_path_factory.mktemp("tiny_app")))


@pytest.fixture(scope="module")
def cache(model_dir):
    return SegmenterCache(device="cpu", models=[model_dir])


def _result(no_target=False, score=0.8):
    mask = PIL.Image.new("L", (8, 8))
    inst = {"mask": mask, "box": {"xmin": 1, "ymin": 2, "xmax": 5, "ymax": 7}, "score": 0.91234}
    return {
        "mask": mask,
        "score": score,
        "no_target": no_target,
        "instances": [] if no_target else [inst, inst],
    }


def test_rows_and_verdict_text():
    assert instance_rows(_result()) == [[1, 0.912, 1, 2, 5, 7], [2, 0.912, 1, 2, 5, 7]]
    assert verdict_text(_result()) == "**Target found**: 2 instance(s), p(target) = 0.80."
    text = verdict_text(_result(no_target=True, score=0.125), unknown=["cat"], notice="Note: demo.")
    assert text.split("\n\n") == [
        "**No target**: the sentence refers to nothing in this image (p(target) = 0.12).",
        "Unknown to this model's tokenizer (read as an unknown token): 'cat'.",
        "Note: demo.",
    ]


def test_segment_reports_the_pipeline_result(model_dir, cache):
    image, sentence = synthetic_example(seed=3, image_size=48)
    segmenter, path = cache.get(model_dir)
    expected = segmenter(image, sentence, threshold=0.0)
    out = segment(image, sentence, model_dir, threshold=0.0, cache=cache)
    assert out.instances == instance_rows(expected) and len(out.instances) > 0
    assert out.verdict.startswith("**Target found**" if not expected["no_target"] else "**No target**")
    assert np.array_equal(np.asarray(out.raw["mask"]), np.asarray(expected["mask"]))
    assert out.overlay.width == 48 * 10 and out.overlay.height > 48 * 10  # scaled to ~480 px, caption
    strict = segment(
        np.asarray(image), sentence, model_dir, threshold=1.0, cache=cache
    )  # numpy input; no score reaches 1
    assert strict.instances == []


def test_segment_names_unknown_words_and_the_photo_notice(model_dir, cache):
    rng = np.random.default_rng(0)
    photo = PIL.Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    with pytest.warns(UserWarning):  # the processor's warning, once
        out = segment(photo, "the cat", model_dir, cache=cache)
    assert "'cat'" in out.verdict and "only knows synthetic scenes" in out.verdict
    flat = segment(PIL.Image.new("RGB", (40, 40), (128, 128, 128)), "the red circle", model_dir, cache=cache)
    assert "Unknown" not in flat.verdict and "synthetic scenes" not in flat.verdict


def test_segment_errors_name_the_problem(model_dir, cache, tmp_path):
    image = PIL.Image.new("RGB", (20, 20))
    with pytest.raises(ValueError, match="Upload an image"):
        segment(None, "the red circle", model_dir, cache=cache)
    with pytest.raises(ValueError, match="Type a sentence"):
        segment(image, "   ", model_dir, cache=cache)
    with pytest.raises(ValueError, match="offers only these models: tiny_app") as err:
        segment(image, "the red circle", str(tmp_path / "nowhere"), cache=cache)
    assert "nowhere" not in str(err.value)


def test_cache_loads_once_and_keeps_the_most_recent(model_dir, tmp_path):
    other = str(save_tiny_instalign(tmp_path / "other", seed=1))
    cache = SegmenterCache(device="cpu", max_models=1, models=[model_dir, other])
    first = cache.get(model_dir)
    assert cache.get(model_dir)[0] is first[0]
    cache.get("other")  # by label
    assert cache.get(model_dir)[0] is not first[0]  # evicted, then loaded again
    demo = SegmenterCache(device="cpu")
    assert demo.get(DEMO_MODEL)[0] is demo.get(None)[0] is demo.get("")[0] is demo.get("demo")[0]


def test_synthetic_examples_are_reproducible():
    a, b = synthetic_example(5, 48), synthetic_example(5, 48)
    assert a[1] == b[1] and np.array_equal(np.asarray(a[0]), np.asarray(b[0]))
    assert a[0].size == (48, 48) and a[0].mode == "RGB"


def test_app_command_without_gradio_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    with pytest.raises(SystemExit, match=r"pip install 'refseg\[app\]'"):
        main(["app", "--port", "7861"])
    with pytest.raises(SystemExit, match="--port must be between"):
        main(["app", "--port", "0"])
