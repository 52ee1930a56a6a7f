"""Output parity of refseg's ReLA with the ORIGINAL implementation (henghuiding/ReLA), on random weights.

Builds the original GRES model from a ReLA checkout and a detectron2 checkout whose paths the user gives
(through ``rela_original.py``, our stub harness; nothing of the original is copied into refseg), gives every
weight a random value, converts the original's state dict with refseg's ReLA converter and compares, in
``eval()``: BERT features, the four backbone maps, the pixel decoder's mask features and three levels, the
decoder states after every layer, the minimap, the region masks, the target-mask logits (``pred_masks``),
the no-target logits, the final masks and no-target decisions, and the training loss.

Run (the environment of ``rela_original.py``; ``REFSEG_DISABLE_KERNELS=1`` is set by the script so that refseg
runs the reference ``grid_sample`` deformable attention, as the original does on CPU)::

    PYTHONPATH=src /work/rela-venv/bin/python scripts/parity/rela_parity.py \\
        --original /path/to/ReLA --detectron2 /path/to/detectron2 [--size reduced|swin-base|swin-tiny|r50]

``--size reduced`` (default): a reduced-size ReLA (Swin embed 8, BERT 2 x 32, hidden 32, 9 decoder layers,
100 queries, 64x64 images, 3 samples); ``--write-fixture tests/fixtures/rela/`` writes its weights (the
ORIGINAL's key layout), inputs and the original's outputs for ``tests/models/rela/test_rela_parity_fixture.py``.
The other sizes are the released configurations at full size (480x480, one sample).

``--mode image`` runs image files (odd sizes, written by the script) through each side's own preprocessing
(the original's test-time ``RefCOCOMapper`` vs ``RelaProcessor``) to the final mask. ``--mode params`` compares
the parameter counts of the released configurations.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("REFSEG_DISABLE_KERNELS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rela_original as orig  # noqa: E402
from transformers import BertConfig  # noqa: E402

from refseg.modeling.pretrained.rela_keys import FILLED_ENCODER_KEYS  # noqa: E402
from refseg.models.rela import RelaConfig, RelaForReferringSegmentation  # noqa: E402
from refseg.models.rela.convert_keys import convert_rela_state_dict  # noqa: E402

CONFIGS = {
    "reduced": "configs/referring_swin_tiny.yaml",
    "swin-base": "configs/referring_swin_base.yaml",
    "swin-tiny": "configs/referring_swin_tiny.yaml",
    "r50": "configs/referring_R50.yaml",
}
# the reduced ReLA: every stage padded to window 7 at 64x64 (maps 16, 8, 4, 2), 3 decoder layers (one per
# level; the first has the language attention), 100 queries (the minimap loss needs 10x10)
REDUCED_OPTS = [
    "MODEL.SWIN.EMBED_DIM", 4,
    "MODEL.SWIN.DEPTHS", [2, 2, 2, 2],
    "MODEL.SWIN.NUM_HEADS", [1, 2, 2, 4],
    "MODEL.SWIN.WINDOW_SIZE", 7,
    "MODEL.SWIN.MLP_RATIO", 2.0,
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", 32,
    "MODEL.SEM_SEG_HEAD.MASK_DIM", 32,
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 2,
    "MODEL.MASK_FORMER.HIDDEN_DIM", 32,
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD", 32,
    "MODEL.MASK_FORMER.NHEADS", 4,
    "MODEL.MASK_FORMER.DEC_LAYERS", 4,
    "INPUT.IMAGE_SIZE", 64,
]  # fmt: skip
REDUCED_PIXEL_DECODER_FFN = 32
REDUCED_BERT = BertConfig(
    vocab_size=100,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=32,
    max_position_embeddings=40,
    type_vocab_size=2,
)
TEXT_LENGTH = 20  # REFERRING.MAX_TOKENS


def refseg_config(cfg: Any, text_config: BertConfig, pixel_decoder_ffn_dim: int = 1024) -> RelaConfig:
    """The ``RelaConfig`` of an original detectron2 config (and its BERT config)."""
    swin = cfg.MODEL.SWIN
    if cfg.MODEL.BACKBONE.NAME == "D2SwinTransformer":
        backbone = {
            "model_type": "swin",
            "image_size": swin.PRETRAIN_IMG_SIZE,
            "patch_size": swin.PATCH_SIZE,
            "embed_dim": swin.EMBED_DIM,
            "depths": list(swin.DEPTHS),
            "num_heads": list(swin.NUM_HEADS),
            "window_size": swin.WINDOW_SIZE,
            "mlp_ratio": float(swin.MLP_RATIO),
            "drop_path_rate": swin.DROP_PATH_RATE,
            "out_features": ["stage1", "stage2", "stage3", "stage4"],
        }
        fusion = "pwam"
    else:
        backbone = dict(RelaConfig.preset("r50").backbone_config.to_dict())
        fusion = "none"
    text = {"model_type": "bert", **text_config.to_dict()}
    for key in ("architectures", "transformers_version", "_name_or_path"):
        text.pop(key, None)
    mf = cfg.MODEL.MASK_FORMER
    return RelaConfig(
        backbone_config=backbone,
        text_config=text,
        image_size=cfg.INPUT.IMAGE_SIZE,
        max_text_length=cfg.REFERRING.MAX_TOKENS,
        encoder_fusion=fusion,
        hidden_dim=mf.HIDDEN_DIM,
        mask_dim=cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
        num_heads=mf.NHEADS,
        pixel_decoder_layers=cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS,
        pixel_decoder_ffn_dim=pixel_decoder_ffn_dim,
        pixel_decoder_num_points=4,
        decoder_layers=mf.DEC_LAYERS - 1,
        decoder_ffn_dim=mf.DIM_FEEDFORWARD,
        num_queries=mf.NUM_OBJECT_QUERIES,
    )


def build_refseg(config: RelaConfig, original_state: dict[str, torch.Tensor]) -> RelaForReferringSegmentation:
    """refseg's model of ``config`` with the original's weights, converted by refseg's converter (strictly)."""
    state, unexpected = convert_rela_state_dict(original_state)
    if unexpected:
        raise RuntimeError(f"the converter has no rule for {unexpected[:8]}")
    model = RelaForReferringSegmentation(config).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not FILLED_ENCODER_KEYS.fullmatch(k)]  # e.g. Swin's unused final LN
    if missing or unexpected:
        raise RuntimeError(
            f"converted state does not fit: missing {missing[:8]}, unexpected {unexpected[:8]}"
        )
    return model


def make_inputs(
    image_size: int, vocab_size: int, valid: list[int], seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random uint8 images ``(B, 3, S, S)`` and token ids ``(B, 20)`` ([CLS] w... [SEP], zero-padded) with
    ``valid[b]`` tokens, as the original's mapper pads them."""
    generator = torch.Generator().manual_seed(seed)
    batch = len(valid)
    images = torch.randint(0, 256, (batch, 3, image_size, image_size), generator=generator, dtype=torch.uint8)
    ids = torch.zeros(batch, TEXT_LENGTH, dtype=torch.int64)
    mask = torch.zeros(batch, TEXT_LENGTH, dtype=torch.int64)
    for b, n in enumerate(valid):
        ids[b, :n] = torch.randint(5, vocab_size, (n,), generator=generator)
        ids[b, 0], ids[b, n - 1] = 101 % vocab_size, 102 % vocab_size
        mask[b, :n] = 1
    return images, ids, mask


def make_targets(image_size: int, batch: int) -> list[torch.Tensor]:
    """Per-sample instance masks ``(n_b, S, S)``: one box / no target / two boxes (cycled), with edges off the
    minimap grid."""
    s = image_size
    boxes = [
        [(0.11, 0.17, 0.62, 0.71)],
        [],
        [(0.05, 0.08, 0.33, 0.41), (0.49, 0.36, 0.93, 0.97)],
    ]
    out = []
    for b in range(batch):
        masks = torch.zeros(len(boxes[b % 3]), s, s)
        for i, (x0, y0, x1, y1) in enumerate(boxes[b % 3]):
            masks[i, int(y0 * s) : int(y1 * s), int(x0 * s) : int(x1 * s)] = 1.0
        out.append(masks)
    return out


def pixel_values_of(images: torch.Tensor, cfg: Any) -> torch.Tensor:
    """``GRES.forward``'s normalisation: ``(x - PIXEL_MEAN) / PIXEL_STD`` in float32 (no padding: sizes are
    multiples of 32)."""
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(-1, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD).view(-1, 1, 1)
    return (images.float() - mean) / std


@torch.no_grad()
def run_refseg(
    model: RelaForReferringSegmentation,
    pixel_values: torch.Tensor,
    ids: torch.Tensor,
    mask: torch.Tensor,
    targets: list[torch.Tensor] | None = None,
) -> dict[str, Any]:
    """refseg's outputs under the original's names (see ``rela_original.run_original``)."""
    captured = {}
    handle = model.model.register_forward_hook(lambda _m, _i, out: captured.setdefault("encoded", out))
    try:
        out = model(pixel_values, ids, mask, mask_labels=targets)
    finally:
        handle.remove()
    encoded = captured["encoded"]
    size = pixel_values.shape[-2:]
    logits = F.interpolate(out.mask_logits, size=size, mode="bilinear", align_corners=False)
    ref_seg, nt_prob = logits.sigmoid(), out.no_target_class_logits.sigmoid()
    maps = dict(zip(("res2", "res3", "res4", "res5"), encoded.encoder_feature_maps))
    return {
        "text_features": encoded.text_features,
        **maps,
        "mask_features": encoded.mask_features,
        "multi_scale_features": list(encoded.multi_scale_features),
        "decoder_states": torch.stack(out.decoder_hidden_states),
        "pred_logits": out.minimap_logits,
        "pred_masks": out.mask_logits,
        "all_masks": out.region_mask_logits,
        "nt_label": out.no_target_class_logits,
        "ref_seg": ref_seg,
        "nt_prob": nt_prob,
        # the original's decisions (argmax of the two sigmoids) on refseg's logits ...
        "pred_mask": ref_seg.argmax(dim=1),
        "pred_nt": nt_prob.argmax(dim=1),
        # ... and refseg's own (post-processing: sigmoid of the upsampled logit difference > 0.5)
        "refseg_mask": F.interpolate(out.semantic_mask_logits[:, None], size=size, mode="bilinear")[:, 0]
        .sigmoid()
        .gt(0.5),
        "refseg_no_target": out.no_target_logits.sigmoid().gt(0.5),
        "loss": out.loss,
    }


def diff(reference: torch.Tensor, ours: torch.Tensor) -> dict[str, float]:
    """Max absolute difference and that difference relative to the reference's max magnitude."""
    reference, ours = reference.double(), ours.double()
    if reference.shape != ours.shape:
        raise ValueError(f"shape mismatch: {tuple(reference.shape)} vs {tuple(ours.shape)}")
    error = (reference - ours).abs().max().item()
    scale = reference.abs().max().item()
    return {"max_abs": error, "max_rel": error / scale if scale else error}


FLOAT_KEYS = (
    "text_features", "res2", "res3", "res4", "res5", "mask_features", "decoder_states",
    "pred_logits", "all_masks", "pred_masks", "nt_label",
)  # fmt: skip


def compare(reference: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """The JSON report of one comparison."""
    report: dict[str, Any] = {k: diff(reference[k], ours[k]) for k in FLOAT_KEYS}
    for level, (a, b) in enumerate(zip(reference["multi_scale_features"], ours["multi_scale_features"])):
        report[f"multi_scale_features.{level}"] = diff(a, b)
    report["pred_mask_pixels_differing"] = int((reference["pred_mask"] != ours["pred_mask"]).sum())
    report["pred_mask_pixels"] = int(reference["pred_mask"].numel())
    report["pred_nt_equal"] = bool(torch.equal(reference["pred_nt"], ours["pred_nt"]))
    saturated = (reference["pred_mask"].bool() != ours["refseg_mask"]).sum()
    report["refseg_postprocess_mask_pixels_differing_from_original_argmax"] = int(saturated)
    report["refseg_no_target_equal"] = bool(
        torch.equal(reference["pred_nt"].bool(), ours["refseg_no_target"])
    )
    return report


def build_pair(size: str, original: str, detectron2: str, seed: int):
    """The original (randomised) and refseg's converted model for ``size``, with the original's config."""
    if size == "reduced":
        cfg = orig.original_cfg(original, detectron2, CONFIGS[size], REDUCED_OPTS)
        text_config = REDUCED_BERT
        model = orig.build_original_model(
            cfg, text_config, reduced_text_dim=True, pixel_decoder_ffn_dim=REDUCED_PIXEL_DECODER_FFN
        )
        ffn = REDUCED_PIXEL_DECODER_FFN
    else:
        cfg = orig.original_cfg(original, detectron2, CONFIGS[size])
        text_config = orig.bert_base_config()
        model = orig.build_original_model(cfg, text_config)
        ffn = 1024
    orig.randomise_(model, seed=seed)
    if size == "reduced":  # the fixture stores the weights as int8 times a power of two: make them so
        quantize_(model)
    state = orig.original_state_dict(model)
    ours = build_refseg(refseg_config(cfg, text_config, ffn), state)
    return cfg, text_config, model, ours, state


def quantization_exponents(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Per floating tensor, the exponent ``e`` of the power of two ``2**e`` that maps its largest magnitude
    onto at most 127."""
    exponents = {}
    for key, value in state.items():
        if value.is_floating_point():
            peak = float(value.abs().max()) if value.numel() else 0.0
            exponents[key] = math.ceil(math.log2(peak / 127)) if peak > 0 else 0
    return exponents


@torch.no_grad()
def quantize_(model: torch.nn.Module) -> dict[str, int]:
    """Round every floating tensor of the state dict (not ``pixel_mean`` / ``pixel_std``, which are
    non-persistent) to ``int8 * 2**e``, in place, so that the fixture stores it exactly in one byte."""
    state = model.state_dict()
    exponents = quantization_exponents(state)
    for key, e in exponents.items():
        state[key].copy_(torch.round(state[key] / 2.0**e).clamp(-127, 127) * 2.0**e)
    return exponents


@torch.no_grad()
def backbone_float64(
    model: torch.nn.Module,
    ours: RelaForReferringSegmentation,
    pixel_values: torch.Tensor,
    ids: torch.Tensor,
    mask: torch.Tensor,
) -> dict[str, Any]:
    """Both visual encoders (and BERT) in float64 on the same inputs: separates a port difference from float32
    rounding amplified by random weights. (The original's pixel decoder casts to float32, so only the encoders
    can run in float64.)"""
    text = copy.deepcopy(model.text_encoder).double()
    features = text(ids, attention_mask=mask)[0]
    theirs = copy.deepcopy(model.backbone).double()
    x = pixel_values.double()
    if type(theirs).__name__ == "D2SwinTransformer":
        reference = theirs(x, features.permute(0, 2, 1), mask.unsqueeze(-1))
    else:
        reference = theirs(x)
    mine = copy.deepcopy(ours.model.backbone).double()
    maps = mine(x, features, mask) if ours.config.encoder_fusion == "pwam" else mine(x)
    report = {name: diff(reference[name], m) for name, m in zip(("res2", "res3", "res4", "res5"), maps)}
    del text, theirs, mine
    return report


def run_tensor_mode(args: argparse.Namespace) -> dict[str, Any]:
    """Compare both models on the same preprocessed tensors (and the loss)."""
    t0 = time.time()
    cfg, text_config, model, ours, state = build_pair(args.size, args.original, args.detectron2, args.seed)
    image_size = cfg.INPUT.IMAGE_SIZE
    valid = [20, 6, 12] if args.size == "reduced" else [9]
    images, ids, mask = make_inputs(image_size, text_config.vocab_size, valid, args.seed + 1)
    targets = make_targets(image_size, len(valid))
    merged = torch.stack(
        [t.sum(0).clamp(max=1) if len(t) else torch.zeros(image_size, image_size) for t in targets]
    )
    t1 = time.time()
    reference = orig.run_original(model, images, ids, mask)
    reference["loss"] = orig.original_loss(model, images, ids, mask, merged)
    t2 = time.time()
    pixel_values = pixel_values_of(images, cfg)
    mine = run_refseg(ours, pixel_values, ids, mask, targets)
    t3 = time.time()
    report = {
        "size": args.size,
        "config": CONFIGS[args.size],
        "batch": len(valid),
        "image_size": image_size,
        "seed": args.seed,
        "parameters_original": sum(p.numel() for p in model.parameters()),
        "parameters_refseg": sum(p.numel() for p in ours.parameters()),
        "attention_margins": orig.attention_margins(reference, cfg.MODEL.MASK_FORMER.DEC_LAYERS - 1),
        **compare(reference, mine),
        "loss_original": float(reference["loss"]),
        "loss_refseg": float(mine["loss"]),
        "loss": diff(reference["loss"], mine["loss"]),
        "seconds": {"build": t1 - t0, "original": t2 - t1, "refseg": t3 - t2},
    }
    if args.float64_backbone:
        report["backbone_float64"] = backbone_float64(model, ours, pixel_values, ids, mask)
    if args.write_fixture:
        if args.size != "reduced":
            raise SystemExit("--write-fixture needs --size reduced")
        write_fixture(Path(args.write_fixture), cfg, state, images, ids, mask, merged, reference, report)
    return report


def packbits(mask: torch.Tensor) -> torch.Tensor:
    """A ``(..., W)`` {0, 1} mask packed 8 pixels to a byte along W (``numpy.packbits``, big-endian bits)."""
    return torch.from_numpy(np.packbits(mask.bool().numpy(), axis=-1))


def write_fixture(
    folder: Path,
    cfg: Any,
    state: dict[str, torch.Tensor],
    images: torch.Tensor,
    ids: torch.Tensor,
    mask: torch.Tensor,
    merged: torch.Tensor,
    reference: dict[str, Any],
    report: dict[str, Any],
) -> None:
    """Write ``weights.safetensors`` (the ORIGINAL's state dict, int8 times a power of two per tensor, exponents in the metadata), ``outputs.safetensors`` (inputs and
    the original's outputs) and ``config.json`` (the refseg config and the measured diffs)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    exponents = quantization_exponents(state)
    weights = {}
    for key, value in state.items():
        if key.endswith("relative_position_index"):  # a recomputed buffer
            continue
        if key in exponents:
            value = torch.round(value / 2.0 ** exponents[key]).to(torch.int8)
            assert torch.equal(value.float() * 2.0 ** exponents[key], state[key]), key
        weights[key] = value.contiguous()
    metadata = {
        "layout": "ReLA (henghuiding/ReLA) GRES state_dict; float tensors as int8 * 2**exponent",
        # one exponent per floating tensor, in the order of the sorted keys
        "exponents": json.dumps([exponents[k] for k in sorted(exponents)]),
    }
    save_file(weights, folder / "weights.safetensors", metadata=metadata)
    outputs = {
        "images": images,
        "input_ids": ids,
        "attention_mask": mask,
        "merged_masks_packed": packbits(merged),
        "res2": reference["res2"],
        "res3": reference["res3"],
        "res4": reference["res4"],
        "res5": reference["res5"],
        "decoder_states_query_stride_10": reference["decoder_states"][:, :, ::10],  # (L, B, 10, C)
        "pred_logits": reference["pred_logits"],
        "pred_masks": reference["pred_masks"],
        "nt_label": reference["nt_label"],
        "pred_mask_packed": packbits(reference["pred_mask"]),
        "pred_nt": reference["pred_nt"],
        "loss": reference["loss"].reshape(1),
    }
    for level, value in enumerate(reference["multi_scale_features"]):
        outputs[f"multi_scale_features.{level}"] = value
    save_file({k: v.contiguous() for k, v in outputs.items()}, folder / "outputs.safetensors")
    config = refseg_config(cfg, REDUCED_BERT, REDUCED_PIXEL_DECODER_FFN)
    meta = {
        "refseg_config": config.to_dict(),
        "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
        "pixel_std": list(cfg.MODEL.PIXEL_STD),
        "measured": {k: v for k, v in report.items() if k != "seconds"},
    }
    (folder / "config.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", required=True, help="path of the ReLA checkout")
    parser.add_argument("--detectron2", required=True, help="path of the detectron2 checkout")
    parser.add_argument("--mode", choices=("tensor", "image", "params"), default="tensor")
    parser.add_argument("--size", choices=tuple(CONFIGS), default="reduced")
    parser.add_argument("--seed", type=int, default=29)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--float64-backbone", action="store_true", help="also compare BERT + visual encoders in float64"
    )
    parser.add_argument("--write-fixture", default=None, help="folder for the reduced fixture")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.mode == "tensor":
        report = run_tensor_mode(args)
    elif args.mode == "image":
        from rela_file_parity import run_image_mode

        report = run_image_mode(args)
    else:
        from rela_file_parity import run_params_mode

        report = run_params_mode(args)
    print(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
