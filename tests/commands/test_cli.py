"""``refseg demo`` and ``refseg predict`` with a tiny random model: exit codes, printed results, pictures,
one-line user errors, ``--version`` and a ``--help`` that imports nothing heavy."""

import json
import os
import subprocess
import sys
from pathlib import Path

import PIL.Image
import pytest

import refseg
from refseg.data import synthetic_scenes
from refseg_cli import demo, main, predict
from tests.processing_helpers import save_tiny_instalign


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


def test_predict_requires_image_and_text(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--text", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        err
        == "refseg predict: error: the following arguments are required: --image (see refseg predict --help)\n"
    )


def test_bad_option_values_are_one_line_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--image", "a.png", "--text", "x", "--threshold", "high"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --threshold: invalid float value: 'high'" in err


def test_demo_without_a_model_explains_what_to_do(monkeypatch, capsys):
    import refseg

    def missing():
        raise FileNotFoundError("the bundled demo model is missing")

    monkeypatch.setattr(refseg, "demo_model_path", missing)
    assert main(["demo", "--seed", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model" in err and err.startswith("refseg demo: error:")


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"refseg {refseg.__version__}"


@pytest.fixture(scope="module")
def broken_models(tmp_path_factory, model_dir):
    """Folders that must be refused: not a model, another library's model, weights missing or unreadable."""
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig

    root = tmp_path_factory.mktemp("broken_models")
    (root / "empty").mkdir()
    BertConfig(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8
    ).save_pretrained(root / "bert")
    for name in ("missing", "garbage"):
        (root / name).mkdir()
        for f in Path(model_dir).iterdir():
            (root / name / f.name).write_bytes(f.read_bytes())
    weights = load_file(root / "missing" / "model.safetensors")
    dropped = sorted(weights)[:2]
    save_file({k: v for k, v in weights.items() if k not in dropped}, root / "missing" / "model.safetensors")
    (root / "garbage" / "model.safetensors").write_bytes(b"not a safetensors file")
    return root


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing image", "no such image file: {tmp}/nothere.png"),
        ("directory image", "no such image file: {tmp} (it is a directory)"),
        ("not an image", "cannot read image file {tmp}/notes.txt"),
        ("blank text", "--text[1] is an empty sentence"),
        ("threshold", "--threshold must be a finite number in [0, 1], got 2.0"),
        ("nan threshold", "--mask-threshold must be a finite number in [0, 1], got nan"),
        ("missing model folder", "no such model folder: {tmp}/no_model"),
        ("empty model folder", "{broken}/empty is not a refseg model folder: it has no config.json"),
        ("bert model", "holds a 'bert' model, not a refseg referring-segmentation model"),
        ("missing weights", "does not hold every weight of InstAlignForReferringSegmentation (2 missing"),
        ("garbage weights", "cannot read {broken}/garbage/model.safetensors"),
    ],
)
def test_user_errors_print_one_line_and_exit_1(case, message, model_dir, broken_models, tmp_path, capsys):
    image = tmp_path / "mine.png"
    PIL.Image.new("RGB", (20, 10)).save(image)
    (tmp_path / "notes.txt").write_text("hello")
    argv = {"image": str(image), "text": ["the red circle"], "model": model_dir, "extra": []}
    changes = {
        "missing image": {"image": str(tmp_path / "nothere.png")},
        "directory image": {"image": str(tmp_path)},
        "not an image": {"image": str(tmp_path / "notes.txt")},
        "blank text": {"text": ["the red circle", "   "]},
        "threshold": {"extra": ["--threshold", "2"]},
        "nan threshold": {"extra": ["--mask-threshold", "nan"]},
        "missing model folder": {"model": str(tmp_path / "no_model")},
        "empty model folder": {"model": str(broken_models / "empty")},
        "bert model": {"model": str(broken_models / "bert")},
        "missing weights": {"model": str(broken_models / "missing")},
        "garbage weights": {"model": str(broken_models / "garbage")},
    }
    argv.update(changes[case])
    command = ["predict", "--image", argv["image"], "--model", argv["model"], *argv["extra"]]
    for text in argv["text"]:
        command += ["--text", text]
    assert main(command) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and err.startswith("refseg predict: error: "), err
    assert "Traceback" not in err and captured.out == ""
    assert message.format(tmp=tmp_path, broken=broken_models) in err, err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such image file"):
        main(["predict", "--debug", "--image", str(tmp_path / "nothere.png"), "--text", "the red circle"])


def _modules_after(code: str) -> list[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


_HEAVY = (
    "torch",
    "transformers",
    "datasets",
    "pycocotools",
    "refseg.data",
    "refseg.kernels",
    "refseg.models",
)


def test_help_imports_no_command_module_beyond_the_package():
    """``refseg --help`` adds nothing heavy to what ``import refseg`` itself loads."""
    code = (
        "import io, json, sys, contextlib\n"
        "import refseg\n"
        "before = set(sys.modules)\n"
        "from refseg_cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    added = _modules_after(code)
    assert not [m for m in added if m.startswith(_HEAVY) or m.startswith("refseg_cli.")], added


def test_help_does_not_import_torch():
    """The console script's entry point (``refseg_cli:main``) answers ``--help`` without torch."""
    code = (
        "import io, json, sys, contextlib\n"
        "from refseg_cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(json.dumps([m for m in {_HEAVY + ('refseg',)!r} if m in sys.modules]))\n"
    )
    assert _modules_after(code) == []


def test_version_does_not_import_torch():
    code = (
        "import io, json, sys, contextlib\n"
        "from refseg_cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        "        main(['--version'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert out.getvalue().startswith('refseg '), out.getvalue()\n"
        f"print(json.dumps([m for m in {_HEAVY + ('refseg',)!r} if m in sys.modules]))\n"
    )
    assert _modules_after(code) == []


def test_console_script_points_to_the_light_dispatcher():
    from pathlib import Path

    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '\nrefseg = "refseg_cli:main"\n' in pyproject
