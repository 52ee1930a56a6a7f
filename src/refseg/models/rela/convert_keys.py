"""The key map of the released ReLA checkpoints (detectron2 layout) onto :class:`RelaForReferringSegmentation`.

Encoders and pixel decoder: the shared map of :mod:`refseg.modeling.pretrained.rela_keys`. The ReLA decoder
(``sem_seg_head.predictor.*``, Sec. 3.2; ``docs/models/rela.md``):

| ReLA | refseg |
|---|---|
| ``RIA_layers.k.multihead_attn.*`` / ``RIA_layers.k.norm`` | ``decoder.layers.k.region_image_attention.*`` / ``region_image_norm`` |
| ``RLA_vision.k.self_attn.*`` / ``RLA_vision.k.norm`` | ``decoder.layers.k.region_attention.*`` / ``region_norm`` |
| ``transformer_ffn_layers.k.{linear1,linear2,norm}`` | ``decoder.layers.k.{ffn.0,ffn.3,ffn_norm}`` |
| ``RLA_lang_att.multihead_attn.*`` / ``RLA_lang_att.norm`` | ``decoder.language_attention.attention.*`` / ``norm`` |
| ``lang_proj`` / ``lang_weight`` (0-d) | ``decoder.language_attention.{language_projection,language_weight}`` |
| ``query_feat`` / ``query_embed`` / ``level_embed`` | ``decoder.{query_feat,query_embed,level_embed}`` |
| ``decoder_norm`` / ``mask_embed.layers.i`` | ``decoder.heads.{decoder_norm,mask_embed.layers.i}`` |
| ``minimap_embed`` / ``nt_embed.layers.i`` | ``decoder.heads.{minimap_embed,no_target_embed.layers.i}`` |

:func:`convert_rela_state_dict` maps a whole file and names what it cannot map;
:func:`rela_state_dict_to_original` is its inverse (the released layout of a refseg model: the parity script
and the converter's expected key list use it).
"""

from __future__ import annotations

import re

import torch

from ...modeling.pretrained.rela_keys import (
    FILLED_ENCODER_KEYS,
    encoder_state_dict_from_rela,
    encoder_state_dict_to_rela,
)

__all__ = [
    "ORIGINAL_PREDICTOR",
    "convert_rela_state_dict",
    "predictor_key_to_refseg",
    "refseg_key_to_predictor",
    "rela_state_dict_to_original",
]

ORIGINAL_PREDICTOR = "sem_seg_head.predictor."

# placeholders of the templates below: a layer index, an nn.MultiheadAttention tensor, an affine tensor
_SLOTS = {
    "k": r"\d+",
    "attn": r"in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias",
    "p": r"weight|bias",
}
# (ReLA name after ``sem_seg_head.predictor.``, refseg name): read one way to convert, the other to invert
_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("RIA_layers.{k}.multihead_attn.{attn}", "decoder.layers.{k}.region_image_attention.{attn}"),
    ("RIA_layers.{k}.norm.{p}", "decoder.layers.{k}.region_image_norm.{p}"),
    ("RLA_vision.{k}.self_attn.{attn}", "decoder.layers.{k}.region_attention.{attn}"),
    ("RLA_vision.{k}.norm.{p}", "decoder.layers.{k}.region_norm.{p}"),
    ("transformer_ffn_layers.{k}.linear1.{p}", "decoder.layers.{k}.ffn.0.{p}"),
    ("transformer_ffn_layers.{k}.linear2.{p}", "decoder.layers.{k}.ffn.3.{p}"),
    ("transformer_ffn_layers.{k}.norm.{p}", "decoder.layers.{k}.ffn_norm.{p}"),
    ("RLA_lang_att.multihead_attn.{attn}", "decoder.language_attention.attention.{attn}"),
    ("RLA_lang_att.norm.{p}", "decoder.language_attention.norm.{p}"),
    ("lang_proj.weight", "decoder.language_attention.language_projection.weight"),
    ("lang_weight", "decoder.language_attention.language_weight"),
    ("query_feat.weight", "decoder.query_feat.weight"),
    ("query_embed.weight", "decoder.query_embed.weight"),
    ("level_embed.weight", "decoder.level_embed.weight"),
    ("decoder_norm.{p}", "decoder.heads.decoder_norm.{p}"),
    ("mask_embed.layers.{k}.{p}", "decoder.heads.mask_embed.layers.{k}.{p}"),
    ("minimap_embed.{p}", "decoder.heads.minimap_embed.{p}"),
    ("nt_embed.layers.{k}.{p}", "decoder.heads.no_target_embed.layers.{k}.{p}"),
)


def _pattern(template: str) -> re.Pattern[str]:
    """A template as a regex whose named groups are its placeholders."""
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>{_SLOTS[part]})" for i, part in enumerate(parts)
    )
    return re.compile(regex)


_FORWARD = tuple((_pattern(original), ours) for original, ours in _TEMPLATES)
_BACKWARD = tuple((_pattern(ours), original) for original, ours in _TEMPLATES)


def _apply(rules: tuple[tuple[re.Pattern[str], str], ...], key: str) -> str | None:
    for pattern, template in rules:
        if match := pattern.fullmatch(key):
            return template.format(**match.groupdict())
    return None


def predictor_key_to_refseg(key: str) -> str | None:
    """The refseg key of one ReLA ``sem_seg_head.predictor.*`` key, or ``None`` when no rule covers it."""
    if not key.startswith(ORIGINAL_PREDICTOR):
        return None
    return _apply(_FORWARD, key[len(ORIGINAL_PREDICTOR) :])


def refseg_key_to_predictor(key: str) -> str | None:
    """Inverse of :func:`predictor_key_to_refseg` (``None`` for keys outside the ReLA decoder)."""
    name = _apply(_BACKWARD, key)
    return None if name is None else ORIGINAL_PREDICTOR + name


def convert_rela_state_dict(
    rela_state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A released ReLA state dict (detectron2 names) -> the state dict of :class:`RelaForReferringSegmentation`.

    Returns ``(state, unexpected)``: the refseg tensors, and the ReLA keys no rule covers (the caller refuses
    them). Recomputed buffers (Swin's ``relative_position_index``, BERT's ``position_ids``) are checked, not
    mapped; refseg's :data:`~refseg.modeling.pretrained.rela_keys.FILLED_ENCODER_KEYS` are not produced.
    """
    state, _, rest = encoder_state_dict_from_rela(rela_state)
    unexpected = []
    for key in rest:
        new = predictor_key_to_refseg(key)
        if new is None:
            unexpected.append(key)
        else:
            state[new] = torch.as_tensor(rela_state[key])
    return state, unexpected


def rela_state_dict_to_original(
    state: dict[str, torch.Tensor], window_sizes: dict[int, int] | None = None
) -> dict[str, torch.Tensor]:
    """A :class:`RelaForReferringSegmentation` state dict in the released checkpoints' layout (the inverse of
    :func:`convert_rela_state_dict`); ``window_sizes`` (Swin stage -> window) adds the index buffers the
    original saves. Raises ``ValueError`` naming keys that are not ReLA's."""
    original = encoder_state_dict_to_rela(state, window_sizes)
    unknown = []
    for key, value in state.items():
        if key.startswith("model.") or FILLED_ENCODER_KEYS.fullmatch(key):
            continue
        name = refseg_key_to_predictor(key)
        if name is None:
            unknown.append(key)
        else:
            original[name] = value
    if unknown:
        raise ValueError(f"not ReLA keys: {', '.join(unknown)}")
    return original
