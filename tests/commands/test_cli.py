"""``refseg demo`` and ``refseg predict`` with a tiny random model: exit codes, printed results, pictures."""

import PIL.Image
import pytest
from processing_helpers import save_tiny_instalign

from refseg.cli import main
from refseg.commands import demo, predict
from refseg.data import synthetic_scenes


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(save_tiny_instalign(tmp_path_factory.mktemp("tiny_cli")))


def _run(module, argv):
    """Through the ``refseg`` command's dispatcher, as ``refseg demo ...`` / ``refseg predict ...``."""
    return main([module.__name__.rsplit(".", 1)[-1], *argv])


def test_demo_prints_every_kind_and_writes_a_grid(model_dir, tmp_path, capsys):
    out = tmp_path / "demo.png"
    argv = [
        "--model",
        model_dir,
        "--seed",
        "7",
        "--num-scenes",
        "2",
        "--image-size",
        "64",
        "--output",
        str(out),
    ]
    assert _run(demo, argv) == 0
    printed = capsys.readouterr().out
    assert "seed 7" in printed and f"overlay written to {out}" in printed
    for kind in ("single", "multi", "no_target"):
        assert f", {kind}]" in printed
    picture = PIL.Image.open(out)
    assert picture.width > 600 and picture.height > 200  # 3 columns of ground truth | prediction panels
    # the same seed gives the same scenes and sentences
    assert _run(demo, argv) == 0
    assert capsys.readouterr().out.splitlines()[1:-1] == printed.splitlines()[1:-1]


def test_demo_picks_one_row_per_kind_per_scene():
    scenes = synthetic_scenes(num_images=3, seed=11, image_size=48, sentences_per_image=9)
    rows = demo.pick_rows(scenes)
    pairs = [(scenes[i]["image_id"], scenes[i]["kind"]) for i in rows]
    assert len(pairs) == len(set(pairs)) and {k for _, k in pairs} <= set(demo.KINDS)
    assert {i for i, _ in pairs} == {0, 1, 2}


def test_predict_on_a_user_image(model_dir, tmp_path, capsys):
    image_path = tmp_path / "mine.png"
    PIL.Image.new("RGB", (70, 50), (10, 200, 30)).save(image_path)
    out = tmp_path / "overlay.png"
    argv = ["--image", str(image_path), "--text", "the green square", "--text", "all circles"]
    assert _run(predict, argv + ["--model", model_dir, "--output", str(out), "--threshold", "0.0"]) == 0
    printed = capsys.readouterr().out
    assert '"the green square"' in printed and '"all circles"' in printed and "(70x50)" in printed
    assert "box [x0=" in printed  # threshold 0 keeps instances of the target-biased random model
    assert PIL.Image.open(out).width >= 2 * 70


def test_predict_requires_image_and_text():
    with pytest.raises(SystemExit):
        main(["predict", "--text", "x"])


def test_demo_without_a_model_explains_what_to_do(monkeypatch):
    import refseg

    def missing():
        raise FileNotFoundError("the bundled demo model is missing")

    monkeypatch.setattr(refseg, "demo_model_path", missing)
    with pytest.raises(SystemExit, match="--model"):
        main(["demo", "--seed", "1"])
