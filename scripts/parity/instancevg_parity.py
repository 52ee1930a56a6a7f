"""Output parity of refseg's InstanceVG with the ORIGINAL implementation, on random weights.

Builds the original model from a checkout whose path the user gives (through ``instancevg_original.py``, our
stub harness; nothing of the original is copied into refseg), randomises every weight, saves an
official-format checkpoint, converts it with ``refseg convert``'s converter and compares, in ``eval()``:
BEiT-3 features, projected features, SimpleFPN levels, ``S_global``, minimap, selected points (exact), decoder
states, class logits, boxes, instance / global mask logits, no-target logits, the post-processed scores and
merged masks (exact) and boxes, and the three training losses (the original's ``forward_train`` run in
``eval()`` mode, so dropout is off and the matching is deterministic).

Run with the parity virtualenv (see ``instancevg_original.py``)::

    PYTHONPATH=src /work/parity-venv/bin/python scripts/parity/instancevg_parity.py /path/to/InstanceVG \\
        [--full] [--fixture tests/fixtures/instancevg/parity_reduced.pt]

Default: the reduced-size model (BEiT-3 2 x 64, head width 32, 128x128 images, vocabulary 1000, 10 queries),
whose weights are rounded to float16-representable values so that a small fixture (weights stored as float16,
inputs and the original's outputs) can be written with ``--fixture`` for ``tests/models/instancevg``.
``--full`` compares the released gRefCOCO configuration at full size (a few minutes on CPU).

``--mode preprocessing`` and ``--mode images`` compare image files (and sentences) through the original's own
test-time path with refseg's image processor and pipeline (``instancevg_file_parity.py``)::

    PYTHONPATH=src /work/parity-venv/bin/python scripts/parity/instancevg_parity.py /path/to/InstanceVG \\
        --mode images [--spm beit3.spm] [--transformers-444 transformers-4.44]

``--mode evaluators`` compares the original's evaluator functions with ``refseg.metrics`` on constructed
predictions; ``--mode test-loop --transformers-444 transformers-4.44`` runs the original's whole test loop and
``examples/evaluate.py`` on one generated gRefCOCO-format dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from instancevg_original import (  # noqa: E402
    build_original_model,
    load_official_checkpoint,
    randomise_,
    save_official_checkpoint,
)

from refseg.boxes import box_xyxy_to_cxcywh  # noqa: E402
from refseg.models.instancevg.convert_instancevg import convert_checkpoint  # noqa: E402

GREFCOCO = "configs/gres/InstanceVG-grefcoco.py"
REDUCED_OVERRIDES = {
    "model.vis_enc.img_size": 128,
    "model.vis_enc.vocab_size": 1000,
    "model.head.input_channels": 64,
    "model.head.hidden_channels": 32,
}
REDUCED_BEIT3 = dict(embed_dim=64, num_layers=2, num_heads=4, ffn_dim=128)
REDUCED_HEAD_WIDTH = 32
# valid tokens per sample: more than N_q, exactly N_q, fewer than N_q, very few (no-target in the loss batch)
VALID_TOKENS = (12, 10, 6, 3)


def sharpen_t2i_attention(model: torch.nn.Module, factor: float = 8.0) -> None:
    """Scale the q and k rows of the T2I cross-attention by ``factor`` (a power of two, exact): the attention
    maps become nearly one-hot, so the greedy point selection faces no near-ties that one ulp could flip."""
    attn = model.head.query_generation.T2I_decoder.layers[0].attentions[1].attn
    channels = attn.embed_dim
    with torch.no_grad():
        attn.in_proj_weight[: 2 * channels].mul_(factor)
        attn.in_proj_bias[: 2 * channels].mul_(factor)


@torch.no_grad()
def favour_targets(model: torch.nn.Module, images, ids, padding) -> None:
    """Shift the object and target logits until the weighted query scores straddle the 0.7 threshold (random
    weights give scores near 0.25 and no kept query, which would leave the merge untested)."""
    model.head.nt_embed.layers[-1].bias[0] += 6.0
    batch, _, height, width = images.shape
    x, y, c = model.vis_enc(images, ids, padding)  # the encoder does not depend on the head's biases
    feat = x.transpose(-1, -2).reshape(batch, -1, height // model.patch_size, width // model.patch_size)
    for _ in range(12):
        pred, _ = model.head.forward_test(feat, c, y, padding, images)
        scores = pred["pred_class"].softmax(-1)[..., 0] * pred["nt_label"][:, :1].sigmoid()
        kept = float((scores > 0.7).float().mean())
        if 0.2 <= kept <= 0.8:
            return
        # one module shared by every decoder layer
        model.head.class_embed[0].bias[0] += 0.5 if kept < 0.2 else -0.25


def round_to_float16_(model: torch.nn.Module) -> None:
    """Make every tensor float16-representable (kept in float32), so a float16 fixture is lossless."""
    with torch.no_grad():
        for tensor in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            tensor.copy_(tensor.half().float())


def make_inputs(image_size: int, vocab_size: int, length: int = 12, seed: int = 0):
    """Images (already normalised), token ids (BOS ... EOS, right padding with 1) and the padding mask."""
    generator = torch.Generator().manual_seed(seed)
    batch = len(VALID_TOKENS)
    images = torch.randn(batch, 3, image_size, image_size, generator=generator).half().float()
    ids = torch.ones(batch, length, dtype=torch.long)
    padding = torch.ones(batch, length, dtype=torch.long)
    for b, valid in enumerate(VALID_TOKENS):
        ids[b, :valid] = torch.randint(4, vocab_size, (valid,), generator=generator)
        ids[b, 0], ids[b, valid - 1] = 0, 2
        padding[b, :valid] = 0
    return images, ids, padding


def make_targets(image_size: int):
    """Per sample: instance masks (n, S, S) and boxes xyxy in pixels; sample 2 has no target."""
    s = image_size
    specs = [
        [(0.1, 0.1, 0.45, 0.5), (0.55, 0.3, 0.9, 0.85)],
        [(0.2, 0.6, 0.7, 0.95)],
        [],
        [(0.05, 0.05, 0.3, 0.3), (0.4, 0.4, 0.6, 0.6), (0.7, 0.1, 0.95, 0.5)],
    ]
    masks, boxes = [], []
    for spec in specs:
        sample = torch.zeros(len(spec), s, s)
        for k, (x0, y0, x1, y1) in enumerate(spec):
            sample[k, int(y0 * s) : int(y1 * s), int(x0 * s) : int(x1 * s)] = 1
        masks.append(sample)
        boxes.append(
            torch.tensor(
                [[int(x0 * s), int(y0 * s), int(x1 * s), int(y1 * s)] for x0, y0, x1, y1 in spec],
                dtype=torch.float32,
            ).reshape(-1, 4)
        )
    return masks, boxes


def _rle(mask: torch.Tensor):
    import pycocotools.mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))


@torch.no_grad()
def run_original(model, images, ids, padding):
    """The original's features, head outputs and post-processed predictions."""
    captured = {}
    hooks = [
        model.head.img_embedding.register_forward_hook(
            lambda m, i, o: captured.__setitem__("image_features", o)
        ),
        model.head.lan_embedding.register_forward_hook(
            lambda m, i, o: captured.__setitem__("text_features", o)
        ),
        model.head.neck.register_forward_hook(lambda m, i, o: captured.__setitem__("fpn", list(o))),
        model.head.unet_decoder.register_forward_hook(
            lambda m, i, o: captured.__setitem__("global_features", o)
        ),
        model.head.decoder_transformer.register_forward_hook(
            lambda m, i, o: captured.__setitem__("states", o[0])
        ),
    ]
    batch, _, height, width = images.shape
    x, y, c = model.vis_enc(images, ids, padding)
    feat = x.transpose(-1, -2).reshape(batch, -1, height // model.patch_size, width // model.patch_size)
    pred, extra = model.head.forward_test(feat, c, y, padding, images)
    for hook in hooks:
        hook.remove()
    metas = [
        {
            "img_shape": (height, width, 3),
            "pad_shape": (height, width, 3),
            "ori_shape": (height, width, 3),
            "scale_factor": np.array([1.0, 1.0, 1.0, 1.0], dtype=np.float32),
            "empty": False,
        }
        for _ in range(batch)
    ]
    post = model.get_predictions_parts(pred, metas, rescale=False, with_bbox=True, with_mask=True)
    import pycocotools.mask as mask_utils

    merged = torch.stack(
        [torch.from_numpy(mask_utils.decode(p["pred_masks"])).bool() for p in post["pred_masks"]]
    )
    return {
        "encoder_image_tokens": x,
        "encoder_text_tokens": y,
        "encoder_cls_token": c,
        "image_features": captured["image_features"],
        "text_features": captured["text_features"],
        "fpn": captured["fpn"],
        "global_features": captured["global_features"],
        "decoder_states": captured["states"],
        "prior_points": extra["img_selected_points"],
        "minimap": extra["attn_map_query"],
        "pred_class_logits": pred["pred_class"],
        "pred_boxes": pred["pred_bbox"],
        "pred_masks": pred["pred_mask"],
        "semantic_mask_logits": pred["pred_global_mask"][:, 0],
        "no_target_class_logits": pred["nt_label"],
        "scores": torch.stack([p["scores"] for p in post["pred_bboxes"]]),
        "boxes": torch.stack([p["boxes"] for p in post["pred_bboxes"]]),
        "merged_masks": merged,
    }


@torch.no_grad()
def original_losses(model, images, ids, padding, masks, boxes):
    """The original's three training losses (``forward_train`` in eval mode)."""
    batch, _, height, width = images.shape
    x, y, c = model.vis_enc(images, ids, padding)
    feat = x.transpose(-1, -2).reshape(batch, -1, height // model.patch_size, width // model.patch_size)
    targets = {
        "mask": [_rle(m.amax(0) if len(m) else torch.zeros(height, width)) for m in masks],
        "mask_parts": [[_rle(part) for part in m] for m in masks],
        "bbox": [b if len(b) else torch.zeros(1, 4) for b in boxes],
        "img_metas": [{"img_shape": (height, width, 3), "empty": len(m) == 0} for m in masks],
    }
    losses, _, _ = model.head.forward_train(
        feat, targets, cls_feat=c, lan_feat=y, lan_mask=padding, img=images
    )
    return {k: float(v) for k, v in losses.items()}


@torch.no_grad()
def run_refseg(model, images, ids, padding, processor):
    attention_mask = 1 - padding
    base = model.model(images, ids, attention_mask)
    out = model(images, ids, attention_mask)
    post = processor.post_process_referring_segmentation(out)
    return {
        "encoder_image_tokens": base.encoder_image_tokens,
        "encoder_text_tokens": base.encoder_text_tokens,
        "encoder_cls_token": base.encoder_cls_token,
        "image_features": base.image_features,
        "text_features": base.text_features,
        "fpn": base.multi_scale_features,
        "global_features": base.global_features,
        "decoder_states": torch.stack(base.decoder_states),
        "prior_points": out.prior_points,
        "minimap": out.minimap,
        "pred_class_logits": out.pred_class_logits,
        "pred_boxes": out.pred_boxes,
        "pred_masks": out.pred_masks,
        "semantic_mask_logits": out.semantic_mask_logits,
        "no_target_class_logits": out.no_target_class_logits,
        "scores": torch.stack([p["scores"] for p in post]),
        "boxes": torch.stack([p["boxes"] for p in post]),
        "merged_masks": torch.stack([p["semantic_mask"] for p in post]),
    }


def refseg_losses(model, images, ids, padding, masks, boxes):
    size = images.shape[-1]
    box_labels = [box_xyxy_to_cxcywh(b / size) for b in boxes]
    with torch.no_grad():
        out = model(images, ids, 1 - padding, mask_labels=masks, box_labels=box_labels)
    d = out.loss_dict
    return {
        "loss_mask": float(d["loss_mask"]),
        "loss_det": float(d["loss_det"]),
        "loss_label_nt": float(d["loss_no_target"]),
    }


EXACT = ("prior_points", "merged_masks")
TEXT_OUTPUTS = ("encoder_text_tokens", "text_features")


def valid_text_only(outputs: dict, padding: torch.Tensor) -> dict:
    """Zero the text outputs at padded positions: their values are never used, and refseg does not encode the
    columns after the longest sentence (the original encodes them)."""
    valid = (1 - padding)[..., None].to(outputs["text_features"].dtype)
    return {k: (v * valid if k in TEXT_OUTPUTS else v) for k, v in outputs.items()}


def compare(reference: dict, ours: dict, atol: float = 1e-4, rtol: float = 1e-4) -> tuple[bool, dict]:
    """Max absolute / relative difference per output; exact equality for points and binary masks."""
    report, ok = {}, True
    for key, expected in reference.items():
        got = ours[key]
        if isinstance(expected, list):
            expected, got = torch.cat([e.flatten() for e in expected]), torch.cat([g.flatten() for g in got])
        expected, got = expected.float(), got.float()
        if expected.shape != got.shape:
            report[key] = f"shape {tuple(got.shape)} != {tuple(expected.shape)}"
            ok = False
            continue
        diff = (expected - got).abs()
        max_abs = float(diff.max()) if diff.numel() else 0.0
        scale = float(expected.abs().max()) if expected.numel() else 0.0
        if key in EXACT:
            passed = bool(torch.equal(expected, got))
            report[key] = {"exact": passed, "mismatches": int((diff > 0).sum())}
        else:
            passed = bool(torch.allclose(got, expected, atol=atol * max(scale, 1.0), rtol=rtol))
            report[key] = {"max_abs": max_abs, "max_rel_to_max": max_abs / max(scale, 1e-12), "ok": passed}
        ok &= passed
    return ok, report


def build(checkout: str, full: bool, seed: int, inputs):
    if full:
        original = build_original_model(checkout, GREFCOCO)
    else:
        original = build_original_model(
            checkout, GREFCOCO, REDUCED_OVERRIDES, beit3_sizes=REDUCED_BEIT3, head_width=REDUCED_HEAD_WIDTH
        )
    randomise_(original, seed=seed)
    sharpen_t2i_attention(original)
    favour_targets(original, *inputs)
    round_to_float16_(original)
    return original.eval()


def main(argv: list[str] | None = None) -> int:
    mode_parser = argparse.ArgumentParser(add_help=False)
    mode_parser.add_argument(
        "--mode", choices=("model", "preprocessing", "images", "evaluators", "test-loop"), default="model"
    )
    mode, _ = mode_parser.parse_known_args(argv)
    if mode.mode != "model":  # pre-processing and image-file parity (instancevg_file_parity.py)
        from instancevg_file_parity import main as file_main

        return file_main(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mode",
        choices=("model", "preprocessing", "images", "evaluators", "test-loop"),
        default="model",
        help="model: random-weight tensors (default); preprocessing: image files and token ids through the "
        "original's test pipeline; images: image files and sentences through the original's test-time path vs "
        "refseg's pipeline; evaluators: the original's evaluators vs refseg.metrics on the same predictions",
    )
    parser.add_argument("checkout", help="path of the original InstanceVG checkout")
    parser.add_argument(
        "--full", action="store_true", help="the released gRefCOCO sizes instead of the reduced model"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fixture", default=None, help="write the reduced parity fixture (.pt) here")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    image_size = 320 if args.full else 128
    vocab = 64010 if args.full else 1000
    images, ids, padding = make_inputs(image_size, vocab, length=50 if args.full else 12)
    original = build(args.checkout, args.full, args.seed, (images, ids, padding))
    print(f"[{time.time() - start:.0f} s] original built and randomised", flush=True)
    masks, boxes = make_targets(image_size)
    timings = {"build_original_s": round(time.time() - start, 1)}

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = os.path.join(folder, "official.pth")
        save_official_checkpoint(original, checkpoint, module_prefix=True)
        load_official_checkpoint(original, checkpoint)  # the file loads strictly into the original
        overrides = (
            {}
            if args.full
            else {
                "encoder_config": {
                    "num_attention_heads": REDUCED_BEIT3["num_heads"],
                    "num_hidden_layers": REDUCED_BEIT3["num_layers"],
                }
            }
        )
        model = convert_checkpoint(
            checkpoint, os.path.join(folder, "converted"), config_overrides=overrides
        ).eval()
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    print(f"[{time.time() - start:.0f} s] converted", flush=True)
    from refseg.models.instancevg import InstanceVGImageProcessor

    processor = InstanceVGImageProcessor(size=image_size)
    t = time.time()
    reference = run_original(original, images, ids, padding)
    timings["original_forward_s"] = round(time.time() - t, 2)
    t = time.time()
    ours = run_refseg(model, images, ids, padding, processor)
    timings["refseg_forward_s"] = round(time.time() - t, 2)
    ok, report = compare(valid_text_only(reference, padding), valid_text_only(ours, padding))
    print(f"[{time.time() - start:.0f} s] forward passes compared", flush=True)
    # the forward comparison first: at full size the losses take long, and a run cut short keeps this much
    print(json.dumps({"forward": report, "timings": timings, "forward_ok": ok}, indent=1), flush=True)
    reference_losses = original_losses(original, images, ids, padding, masks, boxes)
    our_losses = refseg_losses(model, images, ids, padding, masks, boxes)
    for key, value in reference_losses.items():
        close = abs(value - our_losses[key]) <= 1e-4 * max(abs(value), 1.0)
        report[key] = {"original": value, "refseg": our_losses[key], "ok": close}
        ok &= close
    # margins: how far the decisions are from flipping
    min_logit = float(
        torch.cat([reference["pred_masks"].flatten(), reference["semantic_mask_logits"].flatten()])
        .abs()
        .min()
    )
    report["margins"] = {
        "min_abs_mask_logit": min_logit,
        "min_abs_score_minus_threshold": float((reference["scores"] - 0.7).abs().min()),
        "kept_queries_per_sample": (reference["scores"] > 0.7).sum(1).tolist(),
    }
    report["timings"] = timings
    report["parameters"] = {
        "original_unique": sum(p.numel() for p in original.parameters()),
        "refseg": sum(p.numel() for p in model.parameters()),
    }
    print(f"[{time.time() - start:.0f} s] losses compared", flush=True)
    print(json.dumps(report, indent=1))
    print("PARITY OK" if ok else "PARITY FAILED", flush=True)

    if args.fixture and not args.full:
        sub = slice(None, None, 4)
        fixture = {
            "checkpoint_fp16": {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()},
            "config_overrides": json.dumps(overrides),
            "pixel_values_fp16": images.half(),
            "input_ids": ids,
            "text_padding_mask": padding,
            "target_masks": [m.bool() for m in masks],
            "target_boxes_xyxy": boxes,
            "expected": {
                **{
                    k: reference[k]
                    for k in (
                        "encoder_cls_token",
                        "prior_points",
                        "minimap",
                        "pred_class_logits",
                        "pred_boxes",
                        "no_target_class_logits",
                        "scores",
                        "boxes",
                    )
                },
                "encoder_image_tokens": reference["encoder_image_tokens"][:, ::5].clone(),
                "global_features": reference["global_features"][:, :, sub, sub].clone(),
                "decoder_states": reference["decoder_states"].clone(),
                "pred_masks_sub4": reference["pred_masks"][:, :, sub, sub].clone(),
                "semantic_mask_logits_sub4": reference["semantic_mask_logits"][:, sub, sub].clone(),
                "merged_masks_packed": torch.from_numpy(
                    np.packbits(reference["merged_masks"].numpy(), axis=-1)
                ),
                "losses": reference_losses,
            },
        }
        Path(args.fixture).parent.mkdir(parents=True, exist_ok=True)
        torch.save(fixture, args.fixture)
        print(f"fixture written to {args.fixture} ({os.path.getsize(args.fixture) / 1e6:.2f} MB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
