"""examples/train.py: a tiny run saves a loadable model and card; resume is exact; 2 processes == 1 process.

Each run is a subprocess (as a user runs it) on the tiny preset with 64 px scenes and a few steps.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train.py"
TINY = ["--config_preset", "tiny", "--per_device_train_batch_size", "2", "--logging_steps", "1"]
NO_DROPOUT = [
    "--config_overrides",
    json.dumps({"text_config": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}}),
]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("ACCELERATE_USE_CPU", None)
    return env


def _train(*args, launcher=(), env=None):
    cmd = [*launcher, str(SCRIPT), *args] if launcher else [sys.executable, str(SCRIPT), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env or _env(), timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _weights(path):
    return load_file(str(Path(path) / "model.safetensors"))


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _relative_diff(a, b):
    """||a - b|| / ||a|| over all parameters."""
    diff = torch.cat([(a[k] - b[k]).flatten() for k in a])
    return (diff.norm() / torch.cat([a[k].flatten() for k in a]).norm()).item()


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """7 optimizer steps over 3 steps per epoch (2 images x 3 sentences, batch 2), checkpoints every 4."""
    out = tmp_path_factory.mktemp("train") / "full"
    args = [
        *TINY,
        "--train_images",
        "2",
        "--val_images",
        "2",
        "--max_train_steps",
        "7",
        "--checkpointing_steps",
        "4",
    ]
    log = _train(*args, "--output_dir", str(out))
    return out, args, log


def test_tiny_run_writes_a_loadable_model_processor_and_card(full_run):
    from transformers import AutoModel, AutoProcessor, pipeline

    import refseg  # noqa: F401

    out, _, log = full_run
    assert "global batch 2 per optimizer step" in log and "optimizer steps = 7 (3 per epoch" in log
    assert "final evaluation: gIoU" in log
    assert (out / "step_4").is_dir()
    model = AutoModel.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert model.config.model_type == "instalign" and processor.image_processor.size["height"] == 64
    result = pipeline("referring-segmentation", model=str(out))(
        torch.zeros(3, 40, 40, dtype=torch.uint8), "all circles"
    )
    assert result["mask"].size == (40, 40)
    results = json.loads((out / "all_results.json").read_text())
    assert results["completed_steps"] == 7 and 0.0 <= results["gIoU"] <= 100.0
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "refseg" and card.data.pipeline_tag == "image-segmentation"
    metrics = {m["name"]: m["value"] for m in card.data.to_dict()["model-index"][0]["results"][0]["metrics"]}
    assert set(metrics) == {"gIoU", "cIoU", "N-acc", "T-acc"} and metrics["gIoU"] == pytest.approx(
        results["gIoU"], abs=1e-3
    )
    assert "--max_train_steps 7" in card.text and "Wall time:" in card.text


def test_resume_from_latest_matches_an_uninterrupted_run(full_run, tmp_path):
    full, args, _ = full_run
    out = tmp_path / "resumed"
    log = _train(*args, "--output_dir", str(out), "--stop_after_steps", "4")
    assert "stopped after 4 steps" in log and not (out / "model.safetensors").exists()
    log = _train(*args, "--output_dir", str(out), "--resume_from_checkpoint", "latest")
    assert f"Resuming from checkpoint {out / 'step_4'}" in log
    # step 4 is inside the second epoch: optimizer, scheduler, RNG and data position must all be restored
    assert _max_diff(_weights(full), _weights(out)) == 0.0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    common = [
        *TINY[:2],
        *NO_DROPOUT,
        "--train_images",
        "4",
        "--val_images",
        "2",
        "--max_train_steps",
        "3",
        "--skip_eval",
    ]
    launcher = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
    ]  # fmt: skip
    env = dict(_env(), ACCELERATE_USE_CPU="1")  # torch.distributed with gloo on CPU
    log = _train(
        *common,
        "--per_device_train_batch_size",
        "2",
        "--output_dir",
        str(tmp_path / "ddp"),
        launcher=launcher,
        env=env,
    )
    assert "2 per device x 2 process(es) x 1 accumulation step(s) = global batch 4" in log
    _train(*common, "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path / "one"))
    _train(*common, "--per_device_train_batch_size", "2", "--output_dir", str(tmp_path / "small"))
    ddp, one, small = (_weights(tmp_path / name) for name in ("ddp", "one", "small"))
    # equal up to float summation order (Adam amplifies it only for near-zero gradients)
    assert _max_diff(ddp, one) < 1e-4
    same, other = _relative_diff(ddp, one), _relative_diff(ddp, small)
    assert same < 1e-5, same
    assert other > 100 * same, (same, other)  # a different global batch moves the weights far more


def test_pretrained_encoders_from_local_folders_are_loaded(tmp_path):
    """--vision/--text_model_name_or_path: configs, weights (and tokenizer) come from the checkpoints."""
    from transformers import RobertaConfig, RobertaModel, SwinConfig, SwinModel

    import refseg

    torch.manual_seed(0)
    swin = SwinModel(
        SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4], window_size=4, image_size=64)
    )
    swin.save_pretrained(tmp_path / "swin")
    tokenizer = refseg.data.synthetic_tokenizer()
    roberta = RobertaModel(
        RobertaConfig(
            vocab_size=len(tokenizer),
            hidden_size=24,  # differs from the tiny preset's 32: the checkpoint's architecture must win
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=48,
            max_position_embeddings=40,
            pad_token_id=tokenizer.pad_token_id,
        ),
        add_pooling_layer=False,
    )
    roberta.save_pretrained(tmp_path / "roberta")
    tokenizer.save_pretrained(tmp_path / "roberta")
    out = tmp_path / "run"
    log = _train(
        *TINY,
        "--vision_model_name_or_path",
        str(tmp_path / "swin"),
        "--text_model_name_or_path",
        str(tmp_path / "roberta"),
        "--train_images",
        "1",
        "--val_images",
        "1",
        "--max_train_steps",
        "1",
        "--learning_rate",
        "0",
        "--output_dir",
        str(out),
    )
    assert "pretrained vision encoder" in log and "pretrained text encoder" in log
    from transformers import AutoModel

    model = AutoModel.from_pretrained(out)
    for target, source in ((model.model.backbone.model, swin), (model.model.text_encoder.model, roberta)):
        state = source.state_dict()
        loaded = {k.removeprefix("swin."): v for k, v in target.state_dict().items()}  # SwinBackbone nests
        common = [k for k in state if k in loaded]
        assert len(common) == len(state), sorted(set(state) - set(loaded))[:5]
        for key in common:
            assert torch.equal(loaded[key], state[key]), key
    config = json.loads((out / "config.json").read_text())
    assert config["text_config"]["hidden_size"] == 24 and config["backbone_config"]["embed_dim"] == 16


def test_pretrained_encoders_cannot_be_combined_with_a_saved_model(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--model_name_or_path", "x", "--text_model_name_or_path", "y"]
        + ["--output_dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 2 and "cannot be combined with --model_name_or_path" in proc.stderr


def test_targeted_rows_without_instances_are_dropped_from_training(tmp_path):
    """A row with no_target=False and no instances would be trained as no-target: the script drops it."""
    import datasets

    import refseg

    rows = refseg.data.synthetic_scenes(num_images=2, seed=0, image_size=64)
    bad = next(i for i, r in enumerate(rows.select_columns(["no_target"])) if not r["no_target"])

    def empty_one(row, index):
        return {"instances": [] if index == bad else row["instances"]}

    train = rows.map(empty_one, with_indices=True)
    datasets.DatasetDict({"train": train, "validation": rows}).save_to_disk(str(tmp_path / "data"))
    log = _train(
        *TINY,
        "--dataset_dir",
        str(tmp_path / "data"),
        "--max_train_steps",
        "1",
        "--skip_eval",
        "--output_dir",
        str(tmp_path / "run"),
    )
    assert "dropped 1 training rows that are targeted (no_target=False) but have no instances" in log


def test_group_by_image_orders_a_model_without_image_indices(tmp_path):
    """--group_by_image with METRIS (no image_indices in its forward): the grouped order still applies (other
    weights than the shuffled order), its processor repeats each image for its sentences."""
    args = [*TINY, "--model_type", "metris", "--train_images", "4", "--val_images", "1"]
    args += ["--max_train_steps", "3", "--skip_eval"]
    _train(*args, "--group_by_image", "--output_dir", str(tmp_path / "grouped"))
    _train(*args, "--output_dir", str(tmp_path / "shuffled"))
    assert _max_diff(_weights(tmp_path / "grouped"), _weights(tmp_path / "shuffled")) > 0.0


def test_group_by_image_trains_and_resumes_exactly(tmp_path):
    """--group_by_image: a batch encodes each image once; its seeded per-epoch order survives a resume."""
    args = [*TINY, "--train_images", "2", "--val_images", "2", "--max_train_steps", "5", "--skip_eval"]
    args += ["--checkpointing_steps", "2", "--group_by_image"]
    _train(*args, "--output_dir", str(tmp_path / "full"))
    _train(*args, "--output_dir", str(tmp_path / "resumed"), "--stop_after_steps", "4")
    _train(*args, "--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", "latest")
    assert _max_diff(_weights(tmp_path / "full"), _weights(tmp_path / "resumed")) == 0.0
    _train(*args[:-1], "--output_dir", str(tmp_path / "ungrouped"))
    assert _max_diff(_weights(tmp_path / "full"), _weights(tmp_path / "ungrouped")) > 0.0  # another order
