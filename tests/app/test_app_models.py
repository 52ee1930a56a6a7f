"""The models an app offers are fixed at start-up: nothing else loads, and errors show no server path."""

from __future__ import annotations

import re

import pytest

from refseg.app.models import DEMO_MODEL, SegmenterCache, model_choices
from refseg_cli import main
from tests.processing_helpers import save_tiny_instalign


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    return str(save_tiny_instalign(tmp_path_factory.mktemp("models") / "tiny"))


def test_choices_are_labelled_by_folder_name_or_hub_id(model_dir, tmp_path):
    assert model_choices(None) == {DEMO_MODEL: None}
    assert model_choices(["demo", model_dir, "user/some-model", model_dir]) == {
        DEMO_MODEL: None,
        "tiny": model_dir,
        "user/some-model": "user/some-model",
    }
    twin = tmp_path / "tiny"
    twin.mkdir()
    assert list(model_choices([model_dir, str(twin)])) == ["tiny", str(twin)]


def test_missing_folders_and_files_are_refused_at_start(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a model folder"):
        model_choices([str(tmp_path / "weights.bin")])
    with pytest.raises(ValueError, match="no such model folder"):
        model_choices([str(tmp_path / "nowhere")])


def test_unconfigured_models_never_load(model_dir, tmp_path):
    other = str(save_tiny_instalign(tmp_path / "other"))  # a real model folder, not offered
    cache = SegmenterCache(device="cpu", models=["demo"])
    for request in (other, "/etc/passwd", "/root", "../" + other, "user/some-model", 3):
        with pytest.raises(ValueError, match=re.escape(f"offers only these models: {DEMO_MODEL}.")) as err:
            cache.get(request)
        assert (
            "passwd" not in str(err.value)
            and "root" not in str(err.value)
            and str(tmp_path) not in str(err.value)
        )
    assert cache._pipelines == {}
    assert cache.resolve(None) == cache.resolve("") == DEMO_MODEL


def test_a_model_that_fails_to_load_is_named_by_its_label_only(tmp_path, caplog):
    broken = tmp_path / "private" / "broken"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{not json")
    cache = SegmenterCache(device="cpu", models=[str(broken)])
    with pytest.raises(ValueError, match="The model 'broken' could not be loaded") as err:
        cache.get("broken")
    assert "private" not in str(err.value)
    assert "broken" in caplog.text  # the operator's log has the details


def test_app_command_refuses_bad_models_and_limits_before_starting(tmp_path):
    with pytest.raises(SystemExit, match="no such model folder"):
        main(["app", "--model", "demo", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match="--max-upload-mb must be a positive number, got 0"):
        main(["app", "--max-upload-mb", "0"])
    with pytest.raises(SystemExit, match="--max-sentence-chars must be a positive number"):
        main(["app", "--max-sentence-chars", "-5"])
