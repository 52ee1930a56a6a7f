"""examples/train.py trains InstanceVG on synthetic scenes: a short run saves a loadable model and processor."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[3] / "examples" / "train.py"


@pytest.mark.slow
def test_short_synthetic_run(tmp_path):
    from transformers import AutoModel, AutoProcessor

    import refseg  # noqa: F401

    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("ACCELERATE_USE_CPU", None)
    cmd = [
        sys.executable, str(SCRIPT), "--model_type", "instancevg", "--config_preset", "tiny",
        "--train_images", "2", "--val_images", "2", "--per_device_train_batch_size", "2",
        "--max_train_steps", "3", "--max_text_length", "12", "--logging_steps", "1", "--output_dir", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "final evaluation: gIoU" in log
    model = AutoModel.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert model.config.model_type == "instancevg" and processor.image_processor.size["height"] == 64
    inputs = processor(images=torch.zeros(3, 40, 40, dtype=torch.uint8), text="all circles")
    with torch.no_grad():
        outputs = model(**inputs)
    assert torch.isfinite(outputs.pred_masks).all()
