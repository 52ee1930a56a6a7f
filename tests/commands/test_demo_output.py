"""``refseg demo``'s output: no progress bars, and the picture's absolute path (issue 24)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import datasets
import pytest

from refseg.data import synthetic_scenes
from refseg_cli import main
from tests.processing_helpers import save_tiny_instalign

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_datasets_cache(tmp_path, monkeypatch):
    """An empty ``datasets`` cache, so scenes are generated (and a progress bar would be drawn) again."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    assert not datasets.are_progress_bars_disabled()


def test_demo_prints_no_progress_bar_and_the_absolute_path(
    tmp_path, monkeypatch, capfd, fresh_datasets_cache
):
    model = save_tiny_instalign(tmp_path / "model")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    capfd.readouterr()  # saving the model draws its own bars
    argv = ["demo", "--model", str(model), "--seed", "3", "--num-scenes", "2", "--image-size", "64"]
    assert main(argv) == 0
    out, err = capfd.readouterr()
    assert "Generating" not in out + err and "examples/s" not in out + err and "it/s" not in out + err
    written = work.resolve() / "refseg_demo.png"
    assert written.is_file()
    assert out.rstrip().endswith(f"overlay written to {written}")
    assert not datasets.are_progress_bars_disabled()  # the global setting is left as it was


def test_synthetic_scenes_show_a_bar_only_when_asked_or_long(capfd, fresh_datasets_cache):
    synthetic_scenes(2, seed=5, image_size=32)
    assert "Generating" not in "".join(capfd.readouterr())
    synthetic_scenes(2, seed=6, image_size=32, progress=True)
    assert "Generating" in "".join(capfd.readouterr())
    assert not datasets.are_progress_bars_disabled()


def test_app_example_prints_no_progress_bar(capfd, fresh_datasets_cache):
    from refseg.app import synthetic_example

    synthetic_example(seed=12345, image_size=64)
    assert "Generating" not in "".join(capfd.readouterr())


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout"
)
def test_the_demo_picture_is_ignored_by_git():
    result = subprocess.run(["git", "check-ignore", "-q", "refseg_demo.png"], cwd=ROOT)
    assert result.returncode == 0, "refseg_demo.png is not in .gitignore"
