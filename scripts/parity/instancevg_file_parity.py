"""Pre-processing and image-file parity of refseg's InstanceVG with the ORIGINAL test-time path.

Modes of ``instancevg_parity.py`` (``--mode preprocessing`` / ``images`` / ``evaluators`` / ``test-loop``),
dispatched here (``evaluators``: ``instancevg_eval_parity.py``; ``test-loop``: ``instancevg_test_loop_parity.py``,
the original's ``tools/test.py`` loop vs ``examples/evaluate.py`` on a generated gRefCOCO set):

* ``preprocessing``: deterministic odd-sized images written as PNG / JPEG / grey / RGBA / palette / 16-bit files go
  through every released config's own test transforms (decode, ``Resize``, ``Normalize``:
  ``instancevg_original_pipeline.py``) and through ``InstanceVGImageProcessor`` after refseg's ``load_image``; the
  max abs difference (normalised units) per image, for ``resample_backend="opencv"`` (the default) and ``"torch"``.
  With ``--spm`` and ``--transformers-444`` the token ids of the original's loader (transformers 4.44.2) are
  compared with refseg's tokenizer for every config's ``max_token``. ``--fixture`` writes the small CI fixture.
* ``images``: a reduced-size original model with random weights, converted with ``refseg convert`` (with a
  tokenizer), runs ``tools/demo.py``'s path on image files and sentences; ``pipeline("referring-segmentation")``
  runs on the same files. Kept instances, merged masks (IoU) and boxes are compared.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

# refseg (and transformers' auto classes) first: the original's stubs replace torchvision, which they inspect
from refseg.image_utils import load_image  # noqa: E402
from refseg.models.instancevg import InstanceVGImageProcessor  # noqa: E402
from refseg.models.instancevg.processing_instancevg import (  # noqa: E402
    clean_expression,
    tokenizer_from_sentencepiece,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from instancevg_original_pipeline import (  # noqa: E402
    CONFIGS,
    OriginalTestPipeline,
    original_tokenize,
)

# (height, width, file kind): odd sizes, both orientations, extreme aspect ratios, every decoder branch
PREPROCESSING_CASES = (
    (333, 517, "png"),
    (517, 333, "jpeg"),
    (77, 1024, "png"),
    (1024, 77, "jpeg"),
    (241, 199, "grey"),
    (97, 211, "rgba"),
    (160, 643, "palette"),
    (123, 321, "png16"),
    (640, 640, "png"),  # exactly 2x: OpenCV switches INTER_LINEAR to area averaging
)
# the cases the CI fixture keeps (< 1 MB with the tokenizer)
FIXTURE_CASES = (
    "333x517_png",
    "517x333_jpeg",
    "1024x77_jpeg",
    "241x199_grey",
    "97x211_rgba",
    "123x321_png16",
)
SENTENCES = (
    "the red circle on the LEFT!",
    "Man-holding/umbrella (two); dog: cat?",
    "zebra xylophone qq",
    " ".join(["a small green triangle with a large blue square"] * 8),  # longer than 50 tokens
    "person",
)


def make_image(height: int, width: int, seed: int) -> np.ndarray:
    """A deterministic uint8 (h, w, 3) picture: smooth gradients, flat rectangles and a fine stripe pattern."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.empty((height, width, 3))
    for c in range(3):
        fx, fy, phase = rng.uniform(0.5, 4.0), rng.uniform(0.5, 4.0), rng.uniform(0, 2 * np.pi)
        image[..., c] = 128 + 90 * np.sin(2 * np.pi * (fx * x / width + fy * y / height) + phase)
    for _ in range(4):
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        image[y0 : y0 + height // 4, x0 : x0 + width // 5] = rng.integers(0, 256, 3)
    stripes = (np.arange(width) % 3 == 0) * 255.0
    image[height // 2 : height // 2 + max(height // 8, 1), :, 1] = stripes
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def encode_case(height: int, width: int, kind: str, seed: int) -> bytes:
    """The file bytes of one test case."""
    rgb = make_image(height, width, seed)
    buffer = io.BytesIO()
    if kind == "png":
        PIL.Image.fromarray(rgb).save(buffer, "PNG")
    elif kind == "jpeg":
        PIL.Image.fromarray(rgb).save(buffer, "JPEG", quality=90)
    elif kind == "grey":
        PIL.Image.fromarray(rgb[..., 0]).save(buffer, "PNG")
    elif kind == "rgba":
        alpha = np.linspace(0, 255, width, dtype=np.uint8)[None].repeat(height, 0)
        PIL.Image.fromarray(np.dstack([rgb, alpha])).save(buffer, "PNG")
    elif kind == "palette":
        PIL.Image.fromarray(rgb).quantize(64).save(buffer, "PNG")
    elif kind == "png16":
        grey = rgb[..., 1].astype(np.uint16) * 257 + np.arange(width, dtype=np.uint16)[None] % 97
        PIL.Image.fromarray(grey).save(buffer, "PNG")
    else:
        raise ValueError(kind)
    return buffer.getvalue()


def write_cases(folder: Path) -> list[tuple[str, Path]]:
    """Write every pre-processing case to ``folder``: ``[(name, path)]``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for seed, (height, width, kind) in enumerate(PREPROCESSING_CASES):
        name = f"{height}x{width}_{kind}"
        path = folder / (name + (".jpg" if kind == "jpeg" else ".png"))
        path.write_bytes(encode_case(height, width, kind, seed))
        out.append((name, path))
    return out


def refseg_pixels(path: Path, size: int, backend: str) -> torch.Tensor:
    """refseg's ``pixel_values`` (3, S, S) for one file, as the pipeline computes them."""
    processor = InstanceVGImageProcessor(size=size, resample_backend=backend)
    return processor(load_image(path))["pixel_values"][0]


def preprocessing_parity(checkout: str, folder: Path, image_size: int | None = None) -> tuple[bool, dict]:
    """Max abs difference per case and config (normalised units), for both resample backends."""
    report: dict[str, Any] = {}
    ok = True
    cases = write_cases(folder)
    for config in CONFIGS:
        pipeline = OriginalTestPipeline(checkout, config, image_size)
        size = pipeline.resize.img_scale[0][0]
        rows = {}
        for name, path in cases:
            reference = torch.from_numpy(pipeline.load_and_transform(path)["img"]).permute(2, 0, 1)
            row = {}
            for backend in ("opencv", "torch"):
                diff = (refseg_pixels(path, size, backend) - reference).abs()
                row[backend] = {
                    "max_abs": float(diff.max()),
                    "share_above_1e-5": float((diff > 1e-5).float().mean()),
                }
            ok &= row["opencv"]["max_abs"] <= 1e-5
            rows[name] = row
        report[config] = rows
    return ok, report


def tokenisation_parity(checkout: str, spm: str, transformers_444: str) -> tuple[bool, dict]:
    """Token ids and padding of the original's loader (transformers 4.44) vs refseg's processor, per config."""
    report, ok = {}, True
    for config in CONFIGS:
        pipeline = OriginalTestPipeline(checkout, config)
        reference = original_tokenize(
            checkout, pipeline.loader_cfg, spm, list(SENTENCES), transformers_444, sys.executable
        )
        tokenizer = tokenizer_from_sentencepiece(spm, model_max_length=pipeline.max_token)
        mismatches = 0
        for sentence, (ids, padding) in zip(SENTENCES, reference):
            ours = tokenizer(
                clean_expression(sentence),
                truncation=True,
                padding="max_length",
                max_length=pipeline.max_token,
            )
            same = ours["input_ids"] == ids and ours["attention_mask"] == [1 - p for p in padding]
            mismatches += not same
        report[config] = {
            "max_token": pipeline.max_token,
            "sentences": len(SENTENCES),
            "mismatches": mismatches,
        }
        ok &= mismatches == 0
    return ok, report


def write_preprocessing_fixture(
    checkout: str, folder: Path, output: Path, tokens: dict[str, Any] | None = None
) -> None:
    """The CI fixture: each case's file bytes, the original's resized 8-bit image (PNG, recovered exactly from its
    normalised output) and its normalised values at 640 pixels covering every row and column; and ``tokens``
    (:func:`tokenisation_fixture`) when given."""
    cases = write_cases(folder)
    pipeline = OriginalTestPipeline(checkout, CONFIGS[0])
    size = pipeline.resize.img_scale[0][0]
    mean = np.array(pipeline.normalize.mean, dtype=np.float32)
    std = np.array(pipeline.normalize.std, dtype=np.float32)
    rows = np.repeat(np.arange(size), 2)
    cols = (rows * 7 + np.tile(np.arange(2), size) * 161) % size
    fixture = {"size": size, "mean": mean, "std": std, "rows": rows, "cols": cols}
    for name, path in cases:
        if name not in FIXTURE_CASES:
            continue
        normalised = pipeline.load_and_transform(path)["img"]  # (S, S, 3) RGB float32
        levels = np.round(normalised * std + mean)
        assert np.abs((levels.astype(np.float32) - mean) / std - normalised).max() < 1e-5
        png = io.BytesIO()
        PIL.Image.fromarray(levels.astype(np.uint8)).save(png, "PNG", optimize=True)
        fixture[f"{name}/file"] = np.frombuffer(path.read_bytes(), dtype=np.uint8)
        fixture[f"{name}/levels_png"] = np.frombuffer(png.getvalue(), dtype=np.uint8)
        fixture[f"{name}/normalised_at"] = normalised[rows, cols]
    fixture.update(tokens or {})
    fixture["sentences"] = np.array(SENTENCES)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **fixture)
    print(f"fixture written to {output} ({output.stat().st_size / 1e3:.0f} kB)")


def tokenisation_fixture(checkout: str, spm: str, transformers_444: str) -> dict[str, Any]:
    """The original loader's token ids and padding masks for ``SENTENCES``, per ``max_token`` of the configs."""
    out: dict[str, Any] = {"tokens/spm": np.frombuffer(Path(spm).read_bytes(), dtype=np.uint8)}
    for config in (CONFIGS[0], CONFIGS[3]):  # max_token 50 (GRES configs) and 20 (RefCOCO configs)
        pipeline = OriginalTestPipeline(checkout, config)
        reference = original_tokenize(
            checkout, pipeline.loader_cfg, spm, list(SENTENCES), transformers_444, sys.executable
        )
        out[f"tokens/{pipeline.max_token}/ids"] = np.array([ids for ids, _ in reference], dtype=np.int64)
        out[f"tokens/{pipeline.max_token}/padding"] = np.array([p for _, p in reference], dtype=np.int64)
    return out


def main(argv: list[str] | None = None) -> int:
    """``--mode preprocessing`` / ``--mode images`` of ``instancevg_parity.py``."""
    import argparse
    import json
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", help="path of the original InstanceVG checkout")
    parser.add_argument(
        "--mode", choices=("preprocessing", "images", "evaluators", "test-loop"), required=True
    )
    parser.add_argument("--spm", help="a Unigram sentencepiece model (beit3.spm or a small one)")
    parser.add_argument("--transformers-444", help="folder with transformers 4.44.2 (pip install --target)")
    parser.add_argument("--fixture", help="preprocessing: write the CI fixture (.npz) here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="images: seed of the random weights")
    parser.add_argument("--full", action="store_true", help="images: the released gRefCOCO sizes (slow)")
    parser.add_argument(
        "--refseg-backend",
        choices=("opencv", "torch"),
        default="opencv",
        help="images: refseg's resample_backend (torch shows what the approximate resize changes)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ok = True
    with tempfile.TemporaryDirectory() as folder:
        if args.mode == "preprocessing":
            ok, report = preprocessing_parity(args.checkout, Path(folder) / "cases")
            print("max abs difference (normalised units) per config, file and resample_backend:")
            for config, rows in report.items():
                print(config)
                for name, row in rows.items():
                    o, t = row["opencv"], row["torch"]
                    print(
                        f"  {name:>18}  opencv {o['max_abs']:.2e}  torch {t['max_abs']:.2e} "
                        f"({100 * t['share_above_1e-5']:.1f} % of values off)"
                    )
            tokens = None
            if args.spm and args.transformers_444:
                token_ok, token_report = tokenisation_parity(args.checkout, args.spm, args.transformers_444)
                print("tokenisation (original loader with transformers 4.44.2 vs refseg):")
                print(json.dumps(token_report, indent=1))
                ok &= token_ok
                if args.fixture:
                    tokens = tokenisation_fixture(args.checkout, args.spm, args.transformers_444)
            else:
                print("tokenisation not compared (give --spm and --transformers-444)")
            if args.fixture:
                write_preprocessing_fixture(args.checkout, Path(folder) / "cases", Path(args.fixture), tokens)
        elif args.mode == "evaluators":
            from instancevg_eval_parity import evaluator_parity

            ok = evaluator_parity(args.checkout, seed=args.seed)
        elif args.mode == "test-loop":
            from instancevg_test_loop_parity import test_loop_parity

            ok = test_loop_parity(args, Path(folder))
        else:
            from instancevg_images_parity import image_file_parity

            ok = image_file_parity(args, Path(folder))
    print("PARITY OK" if ok else "PARITY FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
