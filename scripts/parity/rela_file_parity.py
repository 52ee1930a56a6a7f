"""Image files and parameter counts for ``rela_parity.py`` (``--mode image`` / ``--mode params``).

``--mode image``: image files of odd sizes (517x333, 333x517, 1024x77 RGB; a 401x263 greyscale PNG; a
JPEG whose EXIF orientation rotates it), written by the script, go through each side's own path to the final
mask: the original's test-time ``RefCOCOMapper`` (detectron2's ``read_image``, ``T.Resize((480, 480))``, the
tokenizer's ``encode(...)[:20]`` padded to 20) and ``GRES.forward``; refseg's ``load_image`` (the pipeline's
loader), ``RelaProcessor`` (``RelaImageProcessor`` + the same tokenizer) and ``RelaForReferringSegmentation``
with ``post_process_referring_segmentation`` (at the 480x480 input size, the original's resolution). The
reduced model of ``rela_parity.py`` is used at 480x480. Reported per image: the preprocessing max difference
(pixel values, exact ids and attention mask), the mask IoU between the original's ``argmax(sigmoid)`` mask
and refseg's post-processed mask, and both no-target decisions.

``--mode params``: the parameter counts of the three released configurations, original vs refseg.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import rela_original as orig
import rela_parity as rp
import torch
from transformers import BertTokenizer

from refseg.image_utils import load_image
from refseg.models.rela import RelaConfig, RelaForReferringSegmentation
from refseg.models.rela.image_processing_rela import RelaImageProcessor
from refseg.models.rela.processing_rela import RelaProcessor

SENTENCES = (
    "the man on the left",
    "red car",
    # longer than 18 word pieces: the original cuts [SEP] off
    "the small dog next to the big red car on the left side of the road near the tree and the man in white",
    "nothing here",
    "the tree",
)
IMAGE_SIZES = ((517, 333), (333, 517), (1024, 77), (401, 263), (300, 200))  # (width, height)


def toy_tokenizer(folder: Path, vocab_size: int) -> BertTokenizer:
    """A BERT word-piece tokenizer over a toy vocabulary of ``vocab_size`` entries (no download): the five
    special tokens, the words of ``SENTENCES``, then filler pieces."""
    words = sorted({w for s in SENTENCES for w in s.split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    vocab += [f"##x{i}" for i in range(vocab_size - len(vocab))]
    path = folder / "vocab.txt"
    path.write_text("\n".join(vocab[:vocab_size]) + "\n")
    return BertTokenizer(str(path), do_lower_case=True, model_max_length=rp.TEXT_LENGTH)


def write_images(folder: Path) -> list[Path]:
    """Smooth random images (gradients plus noise) at ``IMAGE_SIZES``: three RGB PNGs, one greyscale PNG and
    one JPEG stored sideways with EXIF orientation 6 (shown rotated by 90 degrees)."""
    rng = np.random.default_rng(0)
    paths = []
    for index, (w, h) in enumerate(IMAGE_SIZES):
        yy, xx = np.mgrid[0:h, 0:w]
        channels = [
            (127 + 100 * np.sin(xx / (7 + 5 * c) + yy / (11 + 3 * c)) + rng.normal(0, 20, (h, w)))
            for c in range(3)
        ]
        rgb = np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)
        if index == 3:
            image, path = PIL.Image.fromarray(rgb[..., 0], "L"), folder / f"grey_{w}x{h}.png"
            image.save(path)
        elif index == 4:
            image, path = PIL.Image.fromarray(rgb), folder / f"exif6_{w}x{h}.jpg"
            exif = PIL.Image.Exif()
            exif[0x0112] = 6
            image.save(path, quality=92, exif=exif)
        else:
            path = folder / f"rgb_{w}x{h}.png"
            PIL.Image.fromarray(rgb).save(path)
        paths.append(path)
    return paths


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else 1.0


@torch.no_grad()
def run_image_mode(args: argparse.Namespace) -> dict[str, Any]:
    """Each image file and sentence through both sides' own preprocessing to the final mask."""
    opts = [*rp.REDUCED_OPTS, "INPUT.IMAGE_SIZE", 480]
    cfg = orig.original_cfg(args.original, args.detectron2, rp.CONFIGS["reduced"], opts)
    model = orig.build_original_model(
        cfg, rp.REDUCED_BERT, reduced_text_dim=True, pixel_decoder_ffn_dim=rp.REDUCED_PIXEL_DECODER_FFN
    )
    orig.randomise_(model, seed=args.seed)
    ours = rp.build_refseg(
        rp.refseg_config(cfg, rp.REDUCED_BERT, rp.REDUCED_PIXEL_DECODER_FFN), orig.original_state_dict(model)
    )
    report: dict[str, Any] = {"image_size": cfg.INPUT.IMAGE_SIZE, "seed": args.seed, "images": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokenizer = toy_tokenizer(folder, rp.REDUCED_BERT.vocab_size)
        mapper = orig.original_test_mapper(cfg, tokenizer)
        processor = RelaProcessor(
            image_processor=RelaImageProcessor(size={"height": 480, "width": 480}), tokenizer=tokenizer
        )
        for path, sentence in zip(write_images(folder), SENTENCES):
            mapped = orig.map_image_file(mapper, str(path), sentence)
            reference = orig.run_original(
                model, mapped["image"][None], mapped["lang_tokens"], mapped["lang_mask"]
            )
            image = load_image(str(path))
            inputs = processor(images=[image], text=[sentence], return_tensors="pt")
            expected_pixels = rp.pixel_values_of(mapped["image"][None], cfg)
            outputs = ours(**inputs)
            result = processor.image_processor.post_process_referring_segmentation(outputs)[0]
            mask = torch.as_tensor(np.asarray(result["semantic_mask"])).bool()
            original_mask = reference["pred_mask"][0].bool()
            report["images"].append(
                {
                    "file": path.name,
                    "sentence_tokens": int(mapped["lang_mask"].sum()),
                    "pixel_values_max_abs_diff": float(
                        (inputs["pixel_values"] - expected_pixels).abs().max()
                    ),
                    "input_ids_equal": bool(torch.equal(inputs["input_ids"], mapped["lang_tokens"])),
                    "attention_mask_equal": bool(torch.equal(inputs["attention_mask"], mapped["lang_mask"])),
                    "mask_iou": iou(mask, original_mask),
                    "mask_pixels_differing": int((mask != original_mask).sum()),
                    "mask_pixels_original": int(original_mask.sum()),
                    "no_target_original": bool(reference["pred_nt"][0]),
                    "no_target_refseg": bool(result["no_target"]),
                }
            )
    return report


def run_params_mode(args: argparse.Namespace) -> dict[str, Any]:
    """Parameter counts of the released configurations (random weights), original vs refseg's preset."""
    report = {}
    for size, preset in (("swin-base", "swin-base"), ("swin-tiny", "swin-tiny"), ("r50", "r50")):
        cfg = orig.original_cfg(args.original, args.detectron2, rp.CONFIGS[size])
        model = orig.build_original_model(cfg)
        ours = RelaForReferringSegmentation(RelaConfig.preset(preset))
        original_count = sum(p.numel() for p in model.parameters())
        refseg_count = sum(p.numel() for p in ours.parameters())
        frozen_bn = sum(
            b.numel()
            for m in model.modules()
            if type(m).__name__ == "FrozenBatchNorm2d"
            for b in (m.weight, m.bias)
        )
        report[size] = {
            "original": original_count,
            "refseg": refseg_count,
            "difference": refseg_count - original_count,
            "original_state_dict_keys": len(model.state_dict()),
            "original_frozen_bn_affine_buffers": frozen_bn,
        }
        del model, ours
    return report
