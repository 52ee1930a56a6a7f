"""The app's input limits (no Gradio): sentence length, upload size and content, caption, unknown words."""

from __future__ import annotations

import base64
import os
import time

import PIL.Image
import pytest

from refseg.app.inference import SegmenterCache, segment, synthetic_example, verdict_text
from refseg.app.limits import AppLimits, caption_text, check_sentence
from refseg.app.upload import data_url_to_file, read_upload
from tests.processing_helpers import save_tiny_instalign


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    return str(save_tiny_instalign(tmp_path_factory.mktemp("tiny_limits")))


@pytest.fixture(scope="module")
def cache(model_dir) -> SegmenterCache:
    return SegmenterCache(device="cpu", models=[model_dir])


@pytest.fixture()
def scene_png(tmp_path):
    image, sentence = synthetic_example(3, 48)
    path = tmp_path / "scene.png"
    image.save(path)
    return str(path), sentence


def test_limits_have_documented_defaults_and_refuse_non_positive_values():
    limits = AppLimits()
    assert (limits.max_upload_mb, limits.max_sentence_chars, limits.max_sentence_words) == (10.0, 300, 60)
    assert (limits.caption_chars, limits.queue_size, limits.max_upload_bytes) == (120, 32, 10_000_000)
    for bad in ({"max_upload_mb": 0}, {"max_sentence_words": -1}, {"caption_chars": float("nan")}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be a positive number"):
            AppLimits(**bad)


def test_sentence_limits_name_the_limit():
    limits = AppLimits(max_sentence_chars=20, max_sentence_words=3)
    assert check_sentence("  the red circle ", limits) == "the red circle"
    with pytest.raises(ValueError, match="21 characters long; this app accepts at most 20 characters"):
        check_sentence("x" * 21, limits)
    with pytest.raises(ValueError, match="4 words; this app accepts at most 3 words"):
        check_sentence("a b c d", limits)
    with pytest.raises(ValueError, match="must be text, got int"):
        check_sentence(5, limits)


def test_a_huge_sentence_is_refused_at_once(model_dir, cache):
    image = PIL.Image.new("RGB", (32, 32))
    start = time.perf_counter()
    with pytest.raises(ValueError, match="1,000,000 characters long; this app accepts at most 300"):
        segment(image, "x" * 1_000_000, model_dir, cache=cache)
    with pytest.raises(ValueError, match="61 words; this app accepts at most 60 words"):
        segment(image, "red " * 61, model_dir, cache=cache)
    assert time.perf_counter() - start < 5


def test_the_caption_is_truncated(model_dir, cache):
    image, _ = synthetic_example(3, 48)
    limits = AppLimits(caption_chars=30)
    assert caption_text("a" * 10, limits) == "a" * 10
    assert caption_text("the red circle " * 10, limits) == ("the red circle " * 2).rstrip()[:27] + "..."
    short = segment(image, "the red circle", model_dir, cache=cache, limits=limits)
    long = segment(image, "the red circle " * 19, model_dir, cache=cache, limits=limits)
    assert long.overlay.size == short.overlay.size  # 30 characters fit on the caption's line


def test_upload_is_read_by_refseg_and_messages_hide_the_path(tmp_path, model_dir, cache):
    text = tmp_path / "secret_dir" / "notes.png"
    text.parent.mkdir()
    text.write_text("not an image at all\n")
    with pytest.raises(ValueError, match="The upload is not an image refseg can read") as err:
        segment(str(text), "the red circle", model_dir, cache=cache)
    assert "secret_dir" not in str(err.value) and str(tmp_path) not in str(err.value)
    with pytest.raises(ValueError, match="gone from the server") as err:
        read_upload(str(tmp_path / "missing.png"), AppLimits())
    assert str(tmp_path) not in str(err.value)


def test_upload_size_limit(scene_png, model_dir, cache):
    path, sentence = scene_png
    limits = AppLimits(max_upload_mb=0.0001)  # 100 bytes
    with pytest.raises(ValueError, match=r"MB; this app accepts images up to 0\.0001 MB"):
        segment(path, sentence, model_dir, cache=cache, limits=limits)
    out = segment(path, sentence, model_dir, cache=cache)  # the same file within the default limit
    assert out.overlay.width == 480


def test_data_urls_are_size_checked_before_decoding(tmp_path, scene_png):
    path, _ = scene_png
    payload = base64.b64encode(open(path, "rb").read()).decode()
    written = data_url_to_file(f"data:image/png;base64,{payload}", tmp_path / "cache", AppLimits())
    assert read_upload(written, AppLimits()).size == (48, 48)
    with pytest.raises(ValueError, match="accepts images up to 0.0001 MB"):
        data_url_to_file("data:image/png;base64," + "A" * 400, tmp_path, AppLimits(max_upload_mb=0.0001))
    with pytest.raises(ValueError, match="not valid base64"):
        data_url_to_file("data:image/png;base64,***", tmp_path, AppLimits())
    with pytest.raises(ValueError, match="must be base64"):
        data_url_to_file("data:image/png,rawbytes", tmp_path, AppLimits())


def test_the_verdict_names_at_most_ten_unknown_words():
    result = {"score": 0.9, "no_target": True, "instances": []}
    words = [f"w{k}" for k in range(25)]
    text = verdict_text(result, unknown=words)
    assert "'w9' and 15 more." in text and "'w10'" not in text


def test_uploads_use_refseg_loader_postscript_never_runs_ghostscript(tmp_path, monkeypatch):
    calls = tmp_path / "gs_calls"
    fake = tmp_path / "bin" / "gs"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho called >> {calls}\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    eps = tmp_path / "photo.png"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(ValueError, match="The upload is not an image refseg can read") as err:
        read_upload(str(eps), AppLimits())
    assert not calls.exists() and str(tmp_path) not in str(err.value)


def test_uploads_over_the_pixel_cap_are_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setenv("REFSEG_MAX_IMAGE_PIXELS", "1000000")
    path = tmp_path / "wide.png"
    PIL.Image.new("1", (2000, 2000)).save(path)  # 4 MP in a few KB
    with pytest.raises(ValueError, match="The upload is not an image refseg can read: .*pixels") as err:
        read_upload(str(path), AppLimits())
    assert str(tmp_path) not in str(err.value)


def test_a_sentence_of_invisible_characters_only_is_blank():
    from refseg.app.limits import AppLimits, check_sentence

    with pytest.raises(ValueError, match="Type a sentence"):
        check_sentence("\u200b\u200c\u2060", AppLimits())
