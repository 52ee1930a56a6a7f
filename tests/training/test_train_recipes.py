"""examples/train.py with --recipe paper (exact resume, recorded recipe) and --init_from_beit3 (InstanceVG).

The runs are subprocesses on the tiny InstanceVG preset (64 px synthetic scenes, a few steps).
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from refseg.modeling.beit3.pretrained import beit3_state_dict_from_original, interpolate_image_positions
from tests.modeling.beit3.test_init_encoder import pretraining_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "train.py"
TINY_IVG = ["--model_type", "instancevg", "--config_preset", "tiny", "--max_text_length", "12"]
TINY_IVG += ["--per_device_train_batch_size", "2", "--logging_steps", "1", "--train_images", "2"]


def _train(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("ACCELERATE_USE_CPU", None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def train_script():
    spec = importlib.util.spec_from_file_location("refseg_train_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_instancevg_paper_recipe_resumes_exactly_and_is_recorded(tmp_path):
    """5 steps over 3 per epoch: the step schedule's warm-up epoch, AMSGrad state and clipping survive a resume."""
    args = [*TINY_IVG, "--val_images", "2", "--max_train_steps", "5", "--checkpointing_steps", "2"]
    args += ["--recipe", "paper", "--skip_eval"]
    log = _train(*args, "--output_dir", str(tmp_path / "full"))
    # the first group is BEiT-3 (5e-5): 0.5x in the warm-up epoch (steps 1-2), then 1x
    assert "step 1: train_loss" in log and "lr 2.5e-05, epoch 0" in log and "lr 5e-05, epoch 1" in log
    assert "recipe paper (the released InstanceVG code" in log and "clip 0.15" in log
    _train(*args, "--output_dir", str(tmp_path / "resumed"), "--stop_after_steps", "4")
    _train(*args, "--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", "latest")
    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)

    # the clipping at 0.15 binds: without it (--max_grad_norm 0 overrides the recipe) the weights differ
    _train(*args, "--output_dir", str(tmp_path / "unclipped"), "--max_grad_norm", "0")
    unclipped = load_file(str(tmp_path / "unclipped" / "model.safetensors"))
    assert any(not torch.equal(full[k], unclipped[k]) for k in full)
    record = json.loads((tmp_path / "unclipped" / "training_args.json").read_text())
    assert record["max_grad_norm"] == 0.0 and record["recipe"]["max_grad_norm"] == 0.0

    record = json.loads((tmp_path / "full" / "training_args.json").read_text())
    assert record["recipe"]["name"] == "paper" and record["recipe"]["optimizer"] == "adam"
    assert record["recipe"]["max_grad_norm"] == 0.15 and record["max_grad_norm"] == 0.15
    assert record["learning_rate"] == 5e-4 and record["recipe"]["groups"][0]["learning_rate"] == 5e-5
    card = (tmp_path / "full" / "README.md").read_text()
    assert "Adam (AMSGrad)" in card and "beit3 5e-05, rest 0.0005" in card


@pytest.mark.slow
def test_init_from_beit3_starts_the_encoder_from_the_checkpoint(tmp_path, train_script):
    # the model train.py builds (its vocabulary is the synthetic tokenizer's), to write a fitting checkpoint
    model, _ = train_script.build_model_and_processor(
        train_script.parse_args([*TINY_IVG, "--output_dir", "x"])
    )
    checkpoint = pretraining_checkpoint(model.model.encoder, grid=4)  # "pretrained" at 32 px, model at 64 px
    path = tmp_path / "beit3_tiny.pth"
    torch.save(checkpoint, path)
    # learning rate 0: the saved encoder is exactly the loaded one
    args = [*TINY_IVG, "--val_images", "2", "--max_train_steps", "1", "--skip_eval", "--learning_rate", "0"]
    log = _train(*args, "--init_from_beit3", str(path), "--output_dir", str(tmp_path / "run"))
    assert "image positions 4x4 -> 8x8" in log
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    expected = beit3_state_dict_from_original(checkpoint["model"], "beit3.")
    table = "image_position_embedding.weight"
    expected[table] = interpolate_image_positions(expected[table], 8)
    assert len(expected) == len(model.model.encoder.state_dict())
    for key, value in expected.items():
        assert torch.equal(saved[f"model.encoder.{key}"], value), key


def test_init_from_beit3_is_refused_for_other_models_and_missing_files(train_script, tmp_path, capsys):
    path = tmp_path / "beit3.pth"
    path.write_bytes(b"")
    with pytest.raises(SystemExit):
        train_script.parse_args(
            ["--model_type", "metris", "--init_from_beit3", str(path), "--output_dir", "x"]
        )
    assert "only --model_type instancevg has one, not 'metris'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_script.parse_args(
            [*TINY_IVG, "--init_from_beit3", str(tmp_path / "no.pth"), "--output_dir", "x"]
        )
    assert "--init_from_beit3: no such file" in capsys.readouterr().err


def test_metris_grefcoco_recipe_builds_the_paper_model_with_its_no_target_classifier(train_script, capsys):
    """METRIS App. A: on gRefCOCO a no-target classifier is used; ``--recipe paper-grefcoco`` switches it on."""
    import refseg

    tokenizer = refseg.data.synthetic_tokenizer()
    base = ["--model_type", "metris", "--config_preset", "paper", "--output_dir", "x"]
    grefcoco = train_script.new_model_config(
        train_script.parse_args([*base, "--recipe", "paper-grefcoco"]), tokenizer
    )
    refcoco = train_script.new_model_config(train_script.parse_args([*base, "--recipe", "paper"]), tokenizer)
    assert grefcoco.no_target_head is True and refcoco.no_target_head is False
    assert grefcoco.to_dict() | {"no_target_head": False} == refcoco.to_dict()  # nothing else changes
    args = train_script.parse_args([*base, "--recipe", "paper-grefcoco"])
    assert train_script.resolve_recipe(args, grefcoco).name == "paper-grefcoco"
    # a model without the classifier (loaded, or turned off by --config_overrides) is refused in one line
    with pytest.raises(SystemExit, match="recipe 'paper-grefcoco' trains metris with no_target_head=True"):
        train_script.resolve_recipe(args, refcoco)


@pytest.mark.slow
def test_rela_paper_recipe_trains_the_tiny_model_and_never_updates_the_frozen_text_modules(tmp_path):
    """3 steps of the released ReLA recipe: the loss is finite, the step schedule drops at 11/15 of the run,
    and BERT's embeddings (frozen by the recipe) are the initial ones while its layers moved."""
    args = ["--model_type", "rela", "--config_preset", "tiny", "--per_device_train_batch_size", "2"]
    args += ["--logging_steps", "1", "--train_images", "2", "--val_images", "2", "--skip_eval", "--seed", "3"]
    args += [
        "--recipe",
        "paper",
        "--learning_rate",
        "1e-3",
    ]  # a larger rate, so that 3 steps move the weights
    trained = _train(*args, "--max_train_steps", "3", "--output_dir", str(tmp_path / "trained"))
    assert "recipe paper (the released ReLA code" in trained and "clip 0.01" in trained
    assert "frozen: model.text_encoder.model.embeddings" in trained
    # 3 steps: milestones at 3 * 110/150 = 2.2 and 3 * 140/150 = 2.8 -> steps 1-2 at 1e-3, step 3 at 1e-5
    assert "step 2: train_loss" in trained and "lr 0.001, epoch 0" in trained and "lr 1e-05" in trained
    # the same seed at learning rate 0 saves the initial weights (AdamW's decay is scaled by the rate too)
    initial = [a if a != "1e-3" else "0" for a in args]
    _train(*initial, "--max_train_steps", "1", "--output_dir", str(tmp_path / "initial"))
    start = load_file(str(tmp_path / "initial" / "model.safetensors"))
    end = load_file(str(tmp_path / "trained" / "model.safetensors"))
    embeddings = [k for k in start if k.startswith("model.text_encoder.model.embeddings.")]
    assert embeddings and all(torch.equal(start[k], end[k]) for k in embeddings)
    layer = "model.text_encoder.model.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(start[layer], end[layer])
    record = json.loads((tmp_path / "trained" / "training_args.json").read_text())["recipe"]
    assert record["frozen_modules"] == [
        "model.text_encoder.model.embeddings",
        "model.text_encoder.model.encoder.layer[10:]",
    ]
    assert (record["schedule"], record["milestones"], record["train_steps"]) == (
        "multistep_steps",
        [110000, 140000],
        150000,
    )
