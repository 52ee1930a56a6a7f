"""Convert a released InstanceVG checkpoint (``InstanceVG-*.pth``) into a refseg model folder.

``refseg convert instancevg CHECKPOINT.pth --output DIR [--tokenizer beit3.spm] [--config_overrides JSON]``

The checkpoint is loaded safely (:func:`refseg.modeling.pretrained.read_state_dict`: tensors, plain
containers and numpy scalars only, so files written by the original's training script, with optimizer and
scheduler states and metrics, load as they are); a ``module.`` prefix (DDP) is stripped. The model it holds
must be exactly the one its preset (``b-grefcoco``, ``b-refcoco`` or ``l-refcoco``, inferred from the encoder
width and the number of queries, or ``--preset``) and ``config_overrides`` describe: finite values, the same
layer counts, keys and shapes (:mod:`refseg.models.instancevg.convert_checks`). Every key is accounted for:
mapped to a refseg parameter, or dropped from :data:`UNUSED_KEYS` (parameters the released model never uses)
and the duplicate copies of the shared class and box heads (checked equal to the first). The tokenizer is
checked before anything is written, and the folder is written next to the destination and renamed at the end.
See ``docs/models/instancevg.md`` for the full table.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ...modeling.beit3.pretrained import (
    UNUSED_ORIGINAL_BEIT3_KEYS,
    beit3_state_dict_from_original,
    beit3_state_dict_to_original,
)
from ...modeling.pretrained.converted_folder import check_destination, parse_overrides, write_folder
from ...modeling.pretrained.files import read_state_dict
from .configuration_instancevg import InstanceVGConfig
from .convert_checks import checked_config
from .convert_tokenizer import check_tokenizer_fits, load_beit3_tokenizer
from .image_processing_instancevg import InstanceVGImageProcessor
from .modeling_instancevg import InstanceVGForReferringSegmentation
from .processing_instancevg import InstanceVGProcessor

ENCODER_PREFIX = "vis_enc.beit3."

# Parameters and buffers of the released model that never reach an output or a loss (dropped, not converted).
UNUSED_KEYS = (
    "head.query_embedding.weight",  # projection of the CLS token whose result is overwritten
    "head.query_generation.query_embed.weight",  # learned queries of an unused query-generation variant
    "head.decoder_transformer.level_embeds",  # level embeddings of the (absent) deformable encoder
    "head.proj_pixel_level_cons.vis.weight",  # projector of an unused pixel-level contrastive loss
    "head.proj_pixel_level_cons.vis.bias",
    "head.proj_pixel_level_cons.txt.weight",
    "head.proj_pixel_level_cons.txt.bias",
    "head.detrloss.criterion.empty_weight",  # the CE class weights [1, 0.1]: a config value here
) + tuple(ENCODER_PREFIX + key for key in UNUSED_ORIGINAL_BEIT3_KEYS)  # BEiT-3's pretraining mask token

SHARED_HEADS = ("class_embed", "bbox_embed")  # one module registered once per decoder layer

_FIXED = {
    "head.img_embedding.weight": "model.image_projection.weight",
    "head.lan_embedding.weight": "model.text_projection.weight",
    "head.seg_branch.predict.weight": "global_mask_head.weight",
    "head.seg_branch.predict.bias": "global_mask_head.bias",
    "head.query_generation.T2I_decoder.post_norm_layer.weight": "model.query_generator.t2i_decoder.post_norm.weight",
    "head.query_generation.T2I_decoder.post_norm_layer.bias": "model.query_generator.t2i_decoder.post_norm.bias",
    "head.decoder_transformer.reference_points.weight": "model.decoder.reference_points.weight",
    "head.decoder_transformer.reference_points.bias": "model.decoder.reference_points.bias",
    "head.query_pos_embedding.weight": "model.decoder.query_pos_embedding.weight",
    "head.query_pos_embedding.bias": "model.decoder.query_pos_embedding.bias",
}
_UNET_LEVEL = {"4": 0, "3": 1, "2": 2}


def _layer_part(rest: str) -> str | None:
    """Names inside one detrex / mmcv-style transformer layer -> refseg's decoder layer names."""
    rules = (
        (r"attentions\.0\.attn\.(.+)", r"self_attn.\1"),
        (r"attentions\.1\.attn\.(.+)", r"cross_attn.\1"),  # T2I: nn.MultiheadAttention
        (
            r"attentions\.1\.(sampling_offsets|attention_weights|value_proj|output_proj)\.(.+)",
            r"cross_attn.\1.\2",
        ),
        (r"ffns\.0\.layers\.0\.0\.(.+)", r"ffn.fc1.\1"),
        (r"ffns\.0\.layers\.1\.(.+)", r"ffn.fc2.\1"),
    )
    for pattern, replacement in rules:
        if re.fullmatch(pattern, rest):
            return re.sub(pattern, replacement, rest)
    match = re.fullmatch(r"norms\.([0-2])\.(weight|bias)", rest)
    if match:
        return f"norm{int(match[1]) + 1}.{match[2]}"
    return None


def head_key_to_refseg(key: str) -> str | None:
    """refseg name of one original ``head.*`` key (``.0`` copy for the shared heads), or None if unknown."""
    if key in _FIXED:
        return _FIXED[key]
    patterns = (
        (r"head\.neck\.fpn1\.([013])\.(weight|bias)", r"model.simple_fpn.upsample_4x.\1.\2"),
        (r"head\.neck\.fpn2\.0\.(weight|bias)", r"model.simple_fpn.upsample_2x.0.\1"),
        (r"head\.neck\.lateral_convs\.(\d)\.conv\.weight", r"model.simple_fpn.lateral_convs.\1.conv.weight"),
        (
            r"head\.neck\.lateral_convs\.(\d)\.norm_layer\.(weight|bias)",
            r"model.simple_fpn.lateral_convs.\1.norm.\2",
        ),
        (r"head\.neck\.fpn_convs\.(\d)\.conv\.weight", r"model.simple_fpn.output_convs.\1.conv.weight"),
        (
            r"head\.neck\.fpn_convs\.(\d)\.norm_layer\.(weight|bias)",
            r"model.simple_fpn.output_convs.\1.norm.\2",
        ),
        (r"head\.nt_embed\.layers\.(\d)\.(weight|bias)", r"no_target_head.layers.\1.\2"),
        (r"head\.class_embed\.0\.(weight|bias)", r"class_head.\1"),
        (r"head\.bbox_embed\.0\.layers\.(\d)\.(weight|bias)", r"box_head.layers.\1.\2"),
        (
            r"head\.query_generation\.mlp\.layers\.(\d)\.(weight|bias)",
            r"model.query_generator.query_mlp.layers.\1.\2",
        ),
    )
    for pattern, replacement in patterns:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, replacement, key)
    match = re.fullmatch(r"head\.unet_decoder\.(conv|bn)([12])_([234])\.(.+)", key)
    if match:
        kind = "conv" if match[1] == "conv" else "norm"
        return f"model.unet_decoder.blocks.{_UNET_LEVEL[match[3]]}.{kind}{match[2]}.{match[4]}"
    match = re.fullmatch(r"head\.query_generation\.T2I_decoder\.layers\.0\.(.+)", key)
    if match and (part := _layer_part(match[1])) is not None:
        return f"model.query_generator.t2i_decoder.{part}"
    match = re.fullmatch(r"head\.decoder_transformer\.decoder\.layers\.(\d+)\.(.+)", key)
    if match and (part := _layer_part(match[2])) is not None:
        return f"model.decoder.layers.{match[1]}.{part}"
    return None


def _original_layer_part(rest: str, deformable: bool) -> str | None:
    """Inverse of :func:`_layer_part`."""
    rules = [
        (r"self_attn\.(.+)", r"attentions.0.attn.\1"),
        (r"ffn\.fc1\.(.+)", r"ffns.0.layers.0.0.\1"),
        (r"ffn\.fc2\.(.+)", r"ffns.0.layers.1.\1"),
        (r"cross_attn\.(.+)", r"attentions.1.\1" if deformable else r"attentions.1.attn.\1"),
    ]
    for pattern, replacement in rules:
        if re.fullmatch(pattern, rest):
            return re.sub(pattern, replacement, rest)
    match = re.fullmatch(r"norm([1-3])\.(weight|bias)", rest)
    return f"norms.{int(match[1]) - 1}.{match[2]}" if match else None


def refseg_key_to_head(key: str) -> list[str] | None:
    """Original ``head.*`` key(s) of one refseg key (all copies for the shared heads), or None if unknown."""
    for original, ours in _FIXED.items():
        if key == ours:
            return [original]
    levels = {v: k for k, v in _UNET_LEVEL.items()}
    patterns = (
        (r"model\.simple_fpn\.upsample_4x\.([013])\.(weight|bias)", r"head.neck.fpn1.\1.\2"),
        (r"model\.simple_fpn\.upsample_2x\.0\.(weight|bias)", r"head.neck.fpn2.0.\1"),
        (r"model\.simple_fpn\.lateral_convs\.(\d)\.conv\.weight", r"head.neck.lateral_convs.\1.conv.weight"),
        (
            r"model\.simple_fpn\.lateral_convs\.(\d)\.norm\.(weight|bias)",
            r"head.neck.lateral_convs.\1.norm_layer.\2",
        ),
        (r"model\.simple_fpn\.output_convs\.(\d)\.conv\.weight", r"head.neck.fpn_convs.\1.conv.weight"),
        (
            r"model\.simple_fpn\.output_convs\.(\d)\.norm\.(weight|bias)",
            r"head.neck.fpn_convs.\1.norm_layer.\2",
        ),
        (r"no_target_head\.layers\.(\d)\.(weight|bias)", r"head.nt_embed.layers.\1.\2"),
        (
            r"model\.query_generator\.query_mlp\.layers\.(\d)\.(weight|bias)",
            r"head.query_generation.mlp.layers.\1.\2",
        ),
    )
    for pattern, replacement in patterns:
        if re.fullmatch(pattern, key):
            return [re.sub(pattern, replacement, key)]
    match = re.fullmatch(r"class_head\.(weight|bias)", key)
    if match:
        return [f"head.class_embed.{i}.{match[1]}" for i in range(3)]
    match = re.fullmatch(r"box_head\.layers\.(\d)\.(weight|bias)", key)
    if match:
        return [f"head.bbox_embed.{i}.layers.{match[1]}.{match[2]}" for i in range(3)]
    match = re.fullmatch(r"model\.unet_decoder\.blocks\.(\d)\.(conv|norm)([12])\.(.+)", key)
    if match:
        kind = "conv" if match[2] == "conv" else "bn"
        return [f"head.unet_decoder.{kind}{match[3]}_{levels[int(match[1])]}.{match[4]}"]
    match = re.fullmatch(r"model\.query_generator\.t2i_decoder\.(.+)", key)
    if match and (part := _original_layer_part(match[1], deformable=False)) is not None:
        return [f"head.query_generation.T2I_decoder.layers.0.{part}"]
    match = re.fullmatch(r"model\.decoder\.layers\.(\d+)\.(.+)", key)
    if match and (part := _original_layer_part(match[2], deformable=True)) is not None:
        return [f"head.decoder_transformer.decoder.layers.{match[1]}.{part}"]
    return None


def state_dict_to_original(
    state_dict: dict[str, torch.Tensor], num_queries: int, num_decoder_layers: int = 3
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`convert_state_dict`: a refseg state dict in the released checkpoint's layout.

    The shared heads are written once per decoder layer (``num_decoder_layers`` copies, as the released model
    registers them) and the unused parameters are filled with zeros (``num_queries`` rows for the unused
    learned queries), so that the result loads into the original model with ``strict=True``.
    """
    encoder = {k[len("model.encoder.") :]: v for k, v in state_dict.items() if k.startswith("model.encoder.")}
    original = beit3_state_dict_to_original(encoder, ENCODER_PREFIX)
    unknown = []
    for key, tensor in state_dict.items():
        if key.startswith("model.encoder."):
            continue
        names = refseg_key_to_head(key)
        if names is None:
            unknown.append(key)
            continue
        if len(names) == 3:
            names = [re.sub(r"\.0\.", f".{i}.", names[0], count=1) for i in range(num_decoder_layers)]
        for name in names:
            original[name] = tensor
    if unknown:
        raise ValueError(f"not InstanceVG keys: {', '.join(unknown)}")
    width = state_dict["model.encoder.text_embedding.weight"].shape[1]
    channels = state_dict["model.image_projection.weight"].shape[0]
    half = channels // 2
    zeros = {
        "head.query_embedding.weight": (channels, width),
        "head.query_generation.query_embed.weight": (num_queries, channels),
        "head.decoder_transformer.level_embeds": (4, channels),
        "head.proj_pixel_level_cons.vis.weight": (half, channels, 1, 1),
        "head.proj_pixel_level_cons.vis.bias": (half,),
        "head.proj_pixel_level_cons.txt.weight": (half + 1, channels),
        "head.proj_pixel_level_cons.txt.bias": (half + 1,),
        ENCODER_PREFIX + "vision_embed.mask_token": (1, 1, width),
    }
    for name, shape in zeros.items():
        original[name] = torch.zeros(shape)
    original["head.detrloss.criterion.empty_weight"] = torch.tensor([1.0, 0.1])
    return original


def load_original_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a released checkpoint, loaded safely (``weights_only=True``), without ``module.``."""
    return read_state_dict(path, what="InstanceVG checkpoint")


def check_shared_heads(state_dict: dict[str, torch.Tensor]) -> None:
    """The released model registers ``class_embed`` / ``bbox_embed`` once per decoder layer: every copy must
    equal copy 0."""
    for name in SHARED_HEADS:
        pattern = re.compile(rf"head\.{name}\.(\d+)\.(.+)")
        copies: dict[str, dict[int, torch.Tensor]] = {}
        for key, tensor in state_dict.items():
            match = pattern.fullmatch(key)
            if match:
                copies.setdefault(match[2], {})[int(match[1])] = tensor
        for param, by_index in copies.items():
            if 0 not in by_index:
                raise ValueError(f"head.{name}.0.{param} is missing (the other copies are present)")
            for index, tensor in sorted(by_index.items()):
                if tensor.shape != by_index[0].shape or not torch.equal(tensor, by_index[0]):
                    raise ValueError(
                        f"head.{name}.{index}.{param} differs from head.{name}.0.{param}: the copies of the shared "
                        "head must be equal"
                    )


def config_from_state_dict(
    state_dict: dict[str, torch.Tensor], preset: str | None = None, overrides: dict[str, Any] | None = None
) -> InstanceVGConfig:
    """The :class:`InstanceVGConfig` of ``state_dict``: ``preset`` (inferred from the encoder width and the query
    count when None) with ``overrides``, after checking that the file is exactly that model (finite values,
    layer counts, keys and shapes: :mod:`refseg.models.instancevg.convert_checks`)."""
    return checked_config(state_dict, preset, overrides)


def convert_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original keys -> refseg keys of :class:`InstanceVGForReferringSegmentation`.

    Raises ``ValueError`` naming every key that is neither mapped nor a known unused or duplicate key.
    """
    check_shared_heads(state_dict)
    encoder = beit3_state_dict_from_original(state_dict, ENCODER_PREFIX)
    converted = {f"model.encoder.{k}": v for k, v in encoder.items()}
    unknown = []
    for key, tensor in state_dict.items():
        if key.startswith(ENCODER_PREFIX) or key in UNUSED_KEYS:
            continue
        if re.fullmatch(rf"head\.({'|'.join(SHARED_HEADS)})\.[1-9]\d*\..+", key):
            continue  # duplicate copy, checked equal above
        ours = head_key_to_refseg(key)
        if ours is None:
            unknown.append(key)
        else:
            converted[ours] = tensor
    if unknown:
        raise ValueError(
            f"{len(unknown)} checkpoint key(s) are not InstanceVG parameters: {', '.join(unknown)}"
        )
    return converted


def convert_checkpoint(
    checkpoint: str | Path,
    output_dir: str | Path,
    tokenizer: str | Path | None = None,
    config_overrides: dict[str, Any] | None = None,
    preset: str | None = None,
) -> InstanceVGForReferringSegmentation:
    """Convert ``checkpoint`` and write model (safetensors), config and processor to ``output_dir``.

    ``tokenizer``: BEiT-3's ``beit3.spm`` sentencepiece model; without it the folder has no tokenizer and the
    processor / pipeline cannot be loaded from it until one is added. Everything is checked (the checkpoint
    against its config, the tokenizer against the checkpoint) before anything is written; the folder is
    written next to ``output_dir`` and renamed at the end, so an error leaves no half-written folder.
    """
    output_dir = Path(output_dir)
    check_destination(output_dir, InstanceVGConfig.model_type, "InstanceVG")
    text_tokenizer = None
    if tokenizer is not None:  # cheap refusals (missing, corrupt, BPE file) before reading the checkpoint
        text_tokenizer = load_beit3_tokenizer(tokenizer, model_max_length=1)
    state_dict = load_original_state_dict(checkpoint)
    config = config_from_state_dict(state_dict, preset, config_overrides)
    if text_tokenizer is not None:
        check_tokenizer_fits(text_tokenizer, config.encoder_config.vocab_size, tokenizer)
        text_tokenizer.model_max_length = config.max_text_length
    check_shared_heads(state_dict)
    converted = convert_state_dict(state_dict)
    model = InstanceVGForReferringSegmentation(config)
    model.load_state_dict(converted, strict=True)
    model.eval()
    image_processor = InstanceVGImageProcessor(
        size=config.image_size,
        score_threshold=config.score_threshold,
        mask_threshold=config.mask_threshold,
        score_weighted=config.score_weighted,
        mask_merge=config.mask_merge,
    )

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        if text_tokenizer is not None:
            InstanceVGProcessor(image_processor, text_tokenizer).save_pretrained(folder)
        else:
            image_processor.save_pretrained(folder)

    write_folder(output_dir, write)
    return model


__all__ = [
    "UNUSED_KEYS",
    "check_shared_heads",
    "config_from_state_dict",
    "convert_checkpoint",
    "convert_state_dict",
    "head_key_to_refseg",
    "load_original_state_dict",
    "parse_overrides",
    "refseg_key_to_head",
    "state_dict_to_original",
]
