"""BEiT-3 weights from the original implementation: the key map and the pretraining-checkpoint loader.

The released BEiT-3 code (torchscale's ``BEiT3``) names the vision and language experts ``A`` and ``B`` and
stores the layers under ``encoder.layers``. :func:`beit3_state_dict_from_original` renames such a state dict
to [`Beit3Encoder`]'s names (it is used by checkpoint converters of models built on BEiT-3, e.g. InstanceVG),
and :func:`load_beit3_pretrained` loads a BEiT-3 pretraining checkpoint (``beit3_base_patch16_224.pth`` and
the like) into an encoder, interpolating the image position table when the checkpoint was trained at another
resolution (224x224 -> InstanceVG's 320x320: a 14x14 -> 20x20 bicubic resize); :func:`init_beit3_encoder` does
it for the BEiT-3 encoder inside a model, before training. Files are read with refseg's shared safe reader
(:func:`refseg.modeling.pretrained.read_state_dict`).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..pretrained.files import read_state_dict
from .config import POSITION_OFFSET
from .model import Beit3Encoder

logger = logging.getLogger(__name__)

# Original (torchscale) keys that have no counterpart in Beit3Encoder: the mask token is only used by BEiT-3's
# masked-image-modelling pretraining objective, never by an encoder forward pass.
UNUSED_ORIGINAL_BEIT3_KEYS = ("vision_embed.mask_token",)

_EXPERT_TO_OURS = {"A": "vision", "B": "text"}
_EXPERT_TO_ORIGINAL = {"vision": "A", "text": "B"}
_ATTENTION_TO_OURS = {"q_proj": "query", "k_proj": "key", "v_proj": "value", "out_proj": "output"}
_ATTENTION_TO_ORIGINAL = {value: key for key, value in _ATTENTION_TO_OURS.items()}
_FFN_TO_OURS = {"fc1": "fc1", "fc2": "fc2", "ffn_layernorm": "sub_layer_norm"}
_FFN_TO_ORIGINAL = {value: key for key, value in _FFN_TO_OURS.items()}
_PARAM = r"(weight|bias)"

_FIXED_TO_OURS = {
    "text_embed.weight": "text_embedding.weight",
    "vision_embed.cls_token": "cls_token",
    "vision_embed.proj.weight": "patch_embedding.weight",
    "vision_embed.proj.bias": "patch_embedding.bias",
    "encoder.embed_positions.A.weight": "image_position_embedding.weight",
    "encoder.embed_positions.B.weight": "text_position_embedding.weight",
}
_FIXED_TO_ORIGINAL = {value: key for key, value in _FIXED_TO_OURS.items()}


def _original_key_to_ours(key: str) -> str | None:
    """Our name for one original key (relative to the encoder), or None if the key is unknown."""
    if key in _FIXED_TO_OURS:
        return _FIXED_TO_OURS[key]
    match = re.fullmatch(rf"encoder\.layer_norm\.([AB])\.{_PARAM}", key)
    if match:
        return f"output_layer_norm.{_EXPERT_TO_OURS[match[1]]}.{match[2]}"
    match = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)", key)
    if match is None:
        return None
    layer, rest = f"layers.{match[1]}", match[2]
    found = re.fullmatch(rf"self_attn\.(q_proj|k_proj|v_proj|out_proj)\.([AB])\.{_PARAM}", rest)
    if found:
        return f"{layer}.attention.{_ATTENTION_TO_OURS[found[1]]}.{_EXPERT_TO_OURS[found[2]]}.{found[3]}"
    simple = (
        (rf"self_attn\.inner_attn_ln\.([AB])\.{_PARAM}", "attention.sub_layer_norm"),
        (rf"self_attn_layer_norm\.([AB])\.{_PARAM}", "attention_layer_norm"),
        (rf"final_layer_norm\.([AB])\.{_PARAM}", "feed_forward_layer_norm"),
    )
    for pattern, ours in simple:
        found = re.fullmatch(pattern, rest)
        if found:
            return f"{layer}.{ours}.{_EXPERT_TO_OURS[found[1]]}.{found[2]}"
    found = re.fullmatch(rf"ffn\.([AB])\.(fc1|fc2|ffn_layernorm)\.{_PARAM}", rest)
    if found:
        return f"{layer}.feed_forward.{_EXPERT_TO_OURS[found[1]]}.{_FFN_TO_OURS[found[2]]}.{found[3]}"
    return None


def _our_key_to_original(key: str) -> str | None:
    """The original name of one of our keys, or None if the key is unknown."""
    if key in _FIXED_TO_ORIGINAL:
        return _FIXED_TO_ORIGINAL[key]
    match = re.fullmatch(rf"output_layer_norm\.(vision|text)\.{_PARAM}", key)
    if match:
        return f"encoder.layer_norm.{_EXPERT_TO_ORIGINAL[match[1]]}.{match[2]}"
    match = re.fullmatch(r"layers\.(\d+)\.(.+)", key)
    if match is None:
        return None
    layer, rest = f"encoder.layers.{match[1]}", match[2]
    found = re.fullmatch(rf"attention\.(query|key|value|output)\.(vision|text)\.{_PARAM}", rest)
    if found:
        return (
            f"{layer}.self_attn.{_ATTENTION_TO_ORIGINAL[found[1]]}.{_EXPERT_TO_ORIGINAL[found[2]]}.{found[3]}"
        )
    simple = (
        (rf"attention\.sub_layer_norm\.(vision|text)\.{_PARAM}", "self_attn.inner_attn_ln"),
        (rf"attention_layer_norm\.(vision|text)\.{_PARAM}", "self_attn_layer_norm"),
        (rf"feed_forward_layer_norm\.(vision|text)\.{_PARAM}", "final_layer_norm"),
    )
    for pattern, original in simple:
        found = re.fullmatch(pattern, rest)
        if found:
            return f"{layer}.{original}.{_EXPERT_TO_ORIGINAL[found[1]]}.{found[2]}"
    found = re.fullmatch(rf"feed_forward\.(vision|text)\.(fc1|fc2|sub_layer_norm)\.{_PARAM}", rest)
    if found:
        return f"{layer}.ffn.{_EXPERT_TO_ORIGINAL[found[1]]}.{_FFN_TO_ORIGINAL[found[2]]}.{found[3]}"
    return None


def beit3_state_dict_from_original(
    state_dict: dict[str, torch.Tensor], prefix: str
) -> dict[str, torch.Tensor]:
    """Rename the BEiT-3 tensors of an original (torchscale) state dict to [`Beit3Encoder`]'s keys.

    Every key that starts with ``prefix`` (e.g. ``"beit3."`` in BEiT-3 checkpoints, ``"vis_enc.beit3."`` in
    InstanceVG's) is consumed: renamed, or dropped if it is one of ``UNUSED_ORIGINAL_BEIT3_KEYS`` (the
    pretraining mask token). Keys outside ``prefix`` are ignored, so callers can map the rest of a larger model
    themselves. Tensors are not copied.

    Raises:
        ValueError: naming the keys under ``prefix`` that are not BEiT-3 encoder keys, or if none is found.
    """
    mapped: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name in UNUSED_ORIGINAL_BEIT3_KEYS:
            continue
        ours = _original_key_to_ours(name)
        if ours is None:
            unknown.append(key)
        else:
            mapped[ours] = tensor
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else "")
        raise ValueError(f"not BEiT-3 encoder keys under prefix {prefix!r}: {shown}")
    if not mapped:
        raise ValueError(f"no BEiT-3 encoder key starts with prefix {prefix!r}")
    return mapped


def beit3_state_dict_to_original(
    state_dict: dict[str, torch.Tensor], prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`beit3_state_dict_from_original`: [`Beit3Encoder`] keys -> original keys with
    ``prefix`` prepended (the unused mask token is not produced).

    Raises:
        ValueError: naming the keys that are not [`Beit3Encoder`] keys.
    """
    mapped = {}
    unknown = []
    for key, tensor in state_dict.items():
        original = _our_key_to_original(key)
        if original is None:
            unknown.append(key)
        else:
            mapped[prefix + original] = tensor
    if unknown:
        raise ValueError(f"not Beit3Encoder keys: {', '.join(unknown[:10])}")
    return mapped


def interpolate_image_positions(table: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Resize an image position table ``(2 + 1 + s*s, D)`` to ``(2 + 1 + grid_size**2, D)``.

    The two offset rows and the CLS row are kept; the ``s x s`` patch rows (row-major) are resized bicubically
    (``align_corners=False``, in float32) to ``grid_size x grid_size``, as BEiT-3 fine-tuning at a new
    resolution does.
    """
    num_extra = POSITION_OFFSET + 1
    old_patches = table.shape[0] - num_extra
    old_size = int(round(old_patches**0.5))
    if old_size * old_size != old_patches:
        raise ValueError(
            f"image position table has {table.shape[0]} rows: not {num_extra} + a square number of patch rows"
        )
    if old_size == grid_size:
        return table
    width = table.shape[1]
    patches = table[num_extra:].reshape(1, old_size, old_size, width).permute(0, 3, 1, 2).float()
    patches = F.interpolate(patches, size=(grid_size, grid_size), mode="bicubic", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(grid_size * grid_size, width)
    return torch.cat([table[:num_extra], patches.to(table.dtype)], dim=0)


@dataclass
class Beit3LoadingReport:
    """What :func:`load_beit3_pretrained` did.

    Attributes:
        loaded_keys: encoder keys (our names) copied from the checkpoint.
        ignored_keys: checkpoint keys outside the BEiT-3 prefix (task heads, poolers), plus the unused mask token.
        interpolated_positions: ``(old_grid, new_grid)`` when the image position table was resized, else None.
    """

    loaded_keys: list[str] = field(default_factory=list)
    ignored_keys: list[str] = field(default_factory=list)
    interpolated_positions: tuple[int, int] | None = None


def load_beit3_pretrained(
    encoder: Beit3Encoder, path: str | os.PathLike, prefix: str = "beit3."
) -> Beit3LoadingReport:
    """Load a BEiT-3 pretraining checkpoint into ``encoder`` (in place).

    The file is read safely (``torch.load(weights_only=True)``, or safetensors) with
    :func:`~refseg.modeling.pretrained.read_state_dict`; the state dict is taken from its ``"model"`` (or
    ``"state_dict"`` / ``"module"``) entry when present. Keys under ``prefix`` are mapped with
    :func:`beit3_state_dict_from_original`; keys outside it are reported as ignored. When the checkpoint's image
    position table was trained at another resolution it is interpolated (:func:`interpolate_image_positions`).

    Raises:
        ValueError: if encoder keys are missing, unknown keys are under ``prefix``, or a shape does not match.
    """
    state_dict = read_state_dict(path, what="BEiT-3 checkpoint")
    report = Beit3LoadingReport()
    report.ignored_keys = [
        key
        for key in state_dict
        if not key.startswith(prefix) or key[len(prefix) :] in UNUSED_ORIGINAL_BEIT3_KEYS
    ]
    mapped = beit3_state_dict_from_original(state_dict, prefix)
    target = encoder.state_dict()
    positions = "image_position_embedding.weight"
    if positions in mapped and mapped[positions].shape != target[positions].shape:
        old_rows = mapped[positions].shape[0]
        new_grid = encoder.image_grid_size[0]
        mapped[positions] = interpolate_image_positions(mapped[positions], new_grid)
        report.interpolated_positions = (int(round((old_rows - POSITION_OFFSET - 1) ** 0.5)), new_grid)
    missing = [key for key in target if key not in mapped]
    if missing:
        raise ValueError(f"{os.fspath(path)} lacks BEiT-3 encoder weights: {', '.join(missing[:10])}")
    mismatched = [
        f"{key}: checkpoint {tuple(mapped[key].shape)} vs encoder {tuple(target[key].shape)}"
        for key in target
        if mapped[key].shape != target[key].shape
    ]
    if mismatched:
        raise ValueError("BEiT-3 checkpoint does not fit the encoder's config:\n  " + "\n  ".join(mismatched))
    encoder.load_state_dict({key: mapped[key] for key in target}, strict=True)
    report.loaded_keys = list(target)
    if report.interpolated_positions is not None:
        logger.info(
            "BEiT-3 image positions interpolated from %dx%d to %dx%d", *2 * report.interpolated_positions
        )
    return report


def init_beit3_encoder(model: nn.Module, path: str | os.PathLike) -> Beit3LoadingReport:
    """Load the BEiT-3 pretraining checkpoint ``path`` into the model's (single) BEiT-3 encoder, in place.

    The file is read safely (safetensors, or ``torch.load(weights_only=True)``) and the image position table
    is interpolated when the checkpoint was pretrained at another resolution (224x224 -> 320x320 for
    InstanceVG), see :func:`load_beit3_pretrained`.

    Raises:
        ValueError: the model has no BEiT-3 encoder (only InstanceVG has one), or the file is not a BEiT-3
            checkpoint that fits the encoder's config.
        FileNotFoundError: ``path`` does not exist.
    """
    encoders = [module for module in model.modules() if isinstance(module, Beit3Encoder)]
    if len(encoders) != 1:
        model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise ValueError(
            f"a BEiT-3 initialisation needs a model with one BEiT-3 encoder (model type instancevg); "
            f"model type {model_type!r} has {len(encoders)}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"BEiT-3 checkpoint not found: {os.fspath(path)}")
    try:
        return load_beit3_pretrained(encoders[0], path)
    except ValueError as error:
        if "text_embedding" in str(error):
            raise ValueError(
                f"{error}\n(the text embedding has a row per token of the tokenizer: train with BEiT-3's XLM-R "
                "sentencepiece tokenizer (--tokenizer_name_or_path), and give the encoder the checkpoint's row count, "
                "64010 for the released BEiT-3 files, with --config_overrides "
                '\'{"text_config": {"vocab_size": 64010}}\')'
            ) from error
        raise
    except Exception as error:  # not a checkpoint at all: truncated, foreign format, garbage
        raise ValueError(
            f"cannot read {os.fspath(path)} as a BEiT-3 checkpoint (a torch.save state dict or safetensors "
            f"file): {type(error).__name__}: {error}"
        ) from error
