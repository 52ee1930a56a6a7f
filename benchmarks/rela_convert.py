"""``refseg convert rela`` at full size: a released-layout checkpoint of random weights, converted; JSON on stdout.

```bash
python benchmarks/rela_convert.py --preset swin-base      # also swin-tiny, r50
```

Builds the preset's model with random weights, saves it in the released checkpoints' layout
(``{"model": state_dict, "iteration": ...}``, detectron2 names: ``rela_state_dict_to_original``), then times
:func:`refseg.models.rela.convert_rela.convert_checkpoint` on it (safe read, size / key / shape checks, mapping,
model build, atomic write) and reloads the folder with ``from_pretrained``. Reports the file's keys, parameters
and size, the seconds of each step, whether the reloaded weights equal the file's, and the CPU model.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from refseg.models.rela import RelaConfig, RelaForReferringSegmentation
from refseg.models.rela.convert_keys import rela_state_dict_to_original
from refseg.models.rela.convert_rela import convert_checkpoint

#: a few BERT word pieces: the converter only needs a BERT tokenizer that fits the embedding table
_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "left", "dog"]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="swin-base", choices=("swin-base", "swin-tiny", "r50"))
    args = parser.parse_args()
    torch.manual_seed(0)
    config = RelaConfig.preset(args.preset)
    model = RelaForReferringSegmentation(config)
    windows = None
    if config.encoder_fusion == "pwam":
        windows = dict.fromkeys(range(4), config.backbone_config.window_size)
    original = rela_state_dict_to_original(model.state_dict(), windows)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = folder / f"gres_{args.preset}.pth"
        torch.save({"model": original, "iteration": 149_999}, checkpoint)
        (folder / "vocab.txt").write_text("\n".join(_VOCAB) + "\n")
        start = time.perf_counter()
        converted, report = convert_checkpoint(checkpoint, folder / "out", tokenizer=folder / "vocab.txt")
        convert_s = time.perf_counter() - start
        start = time.perf_counter()
        reloaded = RelaForReferringSegmentation.from_pretrained(folder / "out")
        reload_s = time.perf_counter() - start
        back = rela_state_dict_to_original(reloaded.state_dict(), windows)
        equal = set(back) == set(original) and all(torch.equal(back[k], original[k]) for k in original)
        result = {
            "preset": report.preset,
            "checkpoint_keys": len(original),
            "checkpoint_mb": round(checkpoint.stat().st_size / 2**20, 1),
            "parameters": report.parameters,
            "recomputed_buffers": len(report.recomputed),
            "filled_keys": report.filled,
            "convert_seconds": round(convert_s, 1),
            "reload_seconds": round(reload_s, 1),
            "reloaded_equals_file": equal,
            "cpu": _cpu(),
            "threads": torch.get_num_threads(),
        }
    del converted
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
