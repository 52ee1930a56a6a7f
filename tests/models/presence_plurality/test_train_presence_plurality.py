"""examples/train.py with the presence & plurality model and the model-agnostic augmentation (--tau_no/--tau_multi)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[3] / "examples" / "train.py"


def _train(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("ACCELERATE_USE_CPU", None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _train_module():
    spec = importlib.util.spec_from_file_location("refseg_train_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("model_type", ["instalign", "presence_plurality"])
def test_collate_turns_single_target_rows_into_no_target_and_mosaic_samples(model_type):
    import refseg
    from refseg.data import PresencePluralityAugmentation, synthetic_scenes, synthetic_tokenizer

    train = _train_module()
    rows = [
        row for row in synthetic_scenes(num_images=6, seed=5, image_size=48, kind_weights={"single": 1.0})
    ]
    assert all(len(r["instances"]) == 1 for r in rows)
    image_processor_cls, processor_cls = refseg.models.processor_classes(model_type)
    processor = processor_cls(image_processor_cls(size=64), synthetic_tokenizer())
    plain = train.make_collate_fn(processor, 32)(rows)
    assert all(len(m) == 1 for m in plain["mask_labels"])
    no_target = train.make_collate_fn(processor, 32, augment=PresencePluralityAugmentation(1.0, 0.0, seed=0))(
        rows
    )
    assert all(len(m) == 0 for m in no_target["mask_labels"])  # every row got another image's sentence
    assert not torch.equal(no_target["input_ids"], plain["input_ids"])
    mosaic = train.make_collate_fn(processor, 32, augment=PresencePluralityAugmentation(0.0, 1.0, seed=0))(
        rows
    )
    counts = sorted(len(m) for m in mosaic["mask_labels"])
    assert counts[-1] == 4 and counts[:-1] == [1] * (len(rows) - 1)  # one 2x2 mosaic, batch size kept


def test_tau_arguments_are_validated():
    train = _train_module()
    with pytest.raises(SystemExit):
        train.parse_args(["--output_dir", "x", "--tau_no", "1.5"])
    args = train.parse_args(["--output_dir", "x"])
    assert args.tau_no == 0.0 and args.tau_multi == 0.0


@pytest.mark.slow
def test_short_training_run_with_augmentation_saves_a_loadable_model(tmp_path):
    from transformers import AutoModel, AutoProcessor

    import refseg  # noqa: F401
    from refseg.models.presence_plurality import PresencePluralityForReferringSegmentation

    out = tmp_path / "run"
    log = _train(
        "--model_type", "presence_plurality", "--config_preset", "tiny", "--max_train_steps", "3",
        "--train_images", "4", "--val_images", "2", "--per_device_train_batch_size", "4",
        "--tau_no", "0.5", "--tau_multi", "0.5", "--max_text_length", "32", "--logging_steps", "1",
        "--output_dir", str(out),
    )  # fmt: skip
    assert "Training PresencePluralityForReferringSegmentation" in log and "final evaluation: gIoU" in log
    results = json.loads((out / "all_results.json").read_text())
    assert results["completed_steps"] == 3 and 0.0 <= results["gIoU"] <= 100.0
    model = AutoModel.from_pretrained(out)
    assert isinstance(model, PresencePluralityForReferringSegmentation)
    processor = AutoProcessor.from_pretrained(out)
    assert type(processor).__name__ == "PresencePluralityProcessor"
    assert (out / "README.md").is_file()


@pytest.mark.slow
def test_the_augmentation_trains_instalign_too(tmp_path):
    log = _train(
        "--model_type", "instalign", "--config_preset", "tiny", "--max_train_steps", "2",
        "--train_images", "4", "--val_images", "2", "--per_device_train_batch_size", "4",
        "--tau_no", "1.0", "--tau_multi", "1.0", "--skip_eval", "--output_dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert "Training InstAlignForReferringSegmentation" in log
    assert (tmp_path / "run" / "model.safetensors").is_file()


@pytest.mark.slow
def test_the_losses_fit_one_batch_of_synthetic_scenes():
    """Eq. 5 trains the mask, presence and plurality heads: a tiny model fits 6 expressions in 60 steps."""
    from refseg.data import synthetic_scenes, synthetic_tokenizer
    from refseg.models.presence_plurality import (
        PresencePluralityConfig,
        PresencePluralityForReferringSegmentation,
        PresencePluralityImageProcessor,
        PresencePluralityProcessor,
    )

    torch.manual_seed(0)
    rows = list(synthetic_scenes(num_images=2, seed=1, image_size=64))
    tokenizer = synthetic_tokenizer()
    processor = PresencePluralityProcessor(PresencePluralityImageProcessor(size=64), tokenizer)
    batch = dict(
        processor(
            images=[r["image"] for r in rows],
            text=[r["sentence"] for r in rows],
            instances=[r["instances"] for r in rows],
            padding="max_length",
            max_length=24,
        )
    )
    text = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id, "hidden_dropout_prob": 0.0}
    model = PresencePluralityForReferringSegmentation(
        PresencePluralityConfig.preset("tiny", text_config=text)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(60):
        out = model(**batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    gt = torch.stack([m.amax(0) if len(m) else torch.zeros(64, 64) for m in batch["mask_labels"]]) > 0.5
    with torch.no_grad():
        out = model.eval()(**batch)
    pred = out.semantic_mask_logits > 0
    assert (pred & gt).sum() / (pred | gt).sum() > 0.8
    assert torch.equal(out.no_target, ~gt.flatten(1).any(1))
    plural = torch.tensor([len(m) > 1 for m in batch["mask_labels"]])
    has_target = gt.flatten(1).any(1)
    assert torch.equal(out.plurality_logits.argmax(-1).bool()[has_target], plural[has_target])
