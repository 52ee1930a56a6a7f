"""ReLA's encoders in refseg names: the key map of the released GRES checkpoints' backbone, text encoder and
pixel decoder, both ways.

ReLA (Liu, Ding, Jiang, "GRES", CVPR 2023; code: henghuiding/ReLA, MIT) saves detectron2 state dicts. Its
multimodal Swin (PWAM in every stage, language gates after stages 1-3), its ResNet-50, its BERT-base text
encoder and its Mask2Former pixel decoder are refseg's shared blocks, held as ``model.backbone``,
``model.text_encoder`` and ``model.pixel_decoder`` by the ReLA and the presence & plurality models alike. The
map (ReLA on the left; ``docs/models/rela.md`` has the full table):

| ReLA | refseg |
|---|---|
| ``backbone.patch_embed.{proj,norm}`` | ``model.backbone.model.swin.embeddings.{patch_embeddings.projection,norm}`` |
| ``backbone.layers.i.blocks.j.{norm1,norm2}`` | ``...encoder.layers.i.blocks.j.{layernorm_before,layernorm_after}`` |
| ``backbone.layers.i.blocks.j.attn.qkv`` | split into ``attention.{q,k,v}_proj`` |
| ``backbone.layers.i.blocks.j.attn.{proj,relative_position_bias_table}`` | ``attention.{o_proj,relative_position_bias.relative_position_bias_table}`` |
| ``backbone.layers.i.blocks.j.mlp.{fc1,fc2}`` | same under ``...blocks.j.mlp`` |
| ``backbone.layers.i.downsample.{reduction,norm}`` | ``...encoder.layers.i.downsample.{reduction,norm}`` |
| ``backbone.norm{i}`` | ``model.backbone.model.hidden_states_norms.stage{i+1}`` |
| ``backbone.layers.i.fusion.{vis_project.0,project_mm.0}`` | ``model.backbone.pixel_word_attention.i.{visual,multimodal}_projection`` |
| ``backbone.layers.i.fusion.image_lang_att.{f_query,f_key,f_value,W}.0`` | ``...{query,key,value,output}_projection`` |
| ``backbone.layers.i.res_gate.{0,2}`` | ``model.backbone.language_gates.i.{fc1,fc2}`` |
| ``backbone.stem.conv1`` (+ ``.norm``) | ``model.backbone.model.embedder.embedder.{convolution,normalization}`` |
| ``backbone.res{s}.b.conv{n}`` / ``.shortcut`` (+ ``.norm``) | ``model.backbone.model.encoder.stages.{s-2}.layers.b.{layer.{n-1},shortcut}`` |
| ``sem_seg_head.pixel_decoder.input_proj.k.{0,1}`` | ``model.pixel_decoder.input_projections.k.{0,1}`` |
| ``sem_seg_head.pixel_decoder.transformer.level_embed`` | ``model.pixel_decoder.level_embed`` |
| ``...transformer.encoder.layers.k.{self_attn.*,norm1,linear1,linear2,norm2}`` | ``model.pixel_decoder.layers.k.{self_attn.*,self_attn_layer_norm,fc1,fc2,final_layer_norm}`` |
| ``sem_seg_head.pixel_decoder.{adapter_1,layer_1}`` (+ ``.norm``) | ``model.pixel_decoder.{lateral_convs,output_convs}.0.{0,1}`` |
| ``sem_seg_head.pixel_decoder.mask_features`` | ``model.pixel_decoder.mask_projection`` |
| ``text_encoder.*`` | ``model.text_encoder.model.*`` |

PWAM's 1x1 ``Conv1d`` weights ``(out, in, 1)`` are ``Linear`` weights ``(out, in)`` here. Buffers that refseg
recomputes are not mapped but checked (:func:`check_recomputed_buffer`): Swin's ``relative_position_index`` and
BERT's ``position_ids`` / ``token_type_ids`` (saved by transformers before 4.31). The ResNet's
``num_batches_tracked`` (detectron2's frozen batch norm has none) is refseg's only encoder tensor the file
does not hold (:data:`FILLED_ENCODER_KEYS`), with Swin's final LayerNorm, which no output reads.
"""

from __future__ import annotations

import re

import torch

__all__ = [
    "FILLED_ENCODER_KEYS",
    "OPTIONAL_BUFFERS",
    "RECOMPUTED_BUFFERS",
    "check_recomputed_buffer",
    "encoder_state_dict_from_rela",
    "encoder_state_dict_to_rela",
    "rela_encoder_key",
    "relative_position_index",
]

SWIN = "model.backbone.model.swin."
RESNET = "model.backbone.model."
TEXT = "model.text_encoder.model."
PIXEL_DECODER = "model.pixel_decoder."
ORIGINAL_PIXEL_DECODER = "sem_seg_head.pixel_decoder."

#: refseg keys the ReLA file cannot hold, left at their initial values: Swin's final LayerNorm (no output reads
#: it) and the ResNet batch norms' counters (used in training mode only)
FILLED_ENCODER_KEYS = re.compile(
    r"model\.backbone\.model\.swin\.layernorm\.(weight|bias)|model\.backbone\.model\..*\.num_batches_tracked"
)
#: buffers that only files saved with transformers < 4.31 hold (optional in a ReLA file)
OPTIONAL_BUFFERS = re.compile(r"text_encoder\.embeddings\.(position_ids|token_type_ids)")
#: ReLA buffers that refseg recomputes (checked, not mapped)
RECOMPUTED_BUFFERS = re.compile(
    r"backbone\.layers\.\d+\.blocks\.\d+\.attn\.relative_position_index"
    r"|text_encoder\.embeddings\.(position_ids|token_type_ids)"
)

_FUSION = {
    "vis_project.0": "visual_projection",
    "project_mm.0": "multimodal_projection",
    "image_lang_att.f_query.0": "query_projection",
    "image_lang_att.f_key.0": "key_projection",
    "image_lang_att.f_value.0": "value_projection",
    "image_lang_att.W.0": "output_projection",
}
_BLOCK = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.o_proj",
    "attn.relative_position_bias_table": "attention.relative_position_bias.relative_position_bias_table",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_DEFORMABLE_LAYER = {
    "norm1": "self_attn_layer_norm",
    "linear1": "fc1",
    "linear2": "fc2",
    "norm2": "final_layer_norm",
}
_PIXEL_DECODER = {
    "adapter_1.weight": "lateral_convs.0.0.weight",
    "adapter_1.norm.weight": "lateral_convs.0.1.weight",
    "adapter_1.norm.bias": "lateral_convs.0.1.bias",
    "layer_1.weight": "output_convs.0.0.weight",
    "layer_1.norm.weight": "output_convs.0.1.weight",
    "layer_1.norm.bias": "output_convs.0.1.bias",
    "mask_features.weight": "mask_projection.weight",
    "mask_features.bias": "mask_projection.bias",
    "transformer.level_embed": "level_embed",
}
_QKV = re.compile(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)")
_BN = r"(weight|bias|running_mean|running_var)"


def _resnet_part(conv: str) -> str:
    """``conv1``..``conv3`` / ``shortcut`` of a detectron2 bottleneck -> transformers' ResNet layer name."""
    return "shortcut" if conv == "shortcut" else f"layer.{int(conv[-1]) - 1}"


def rela_encoder_key(key: str) -> str | None:
    """The refseg key of one ReLA encoder / pixel-decoder / text-encoder key (``None`` when no rule applies;
    ``attn.qkv`` is split by :func:`encoder_state_dict_from_rela`)."""
    if key.startswith("text_encoder."):
        return TEXT + key[len("text_encoder.") :]
    if m := re.fullmatch(r"backbone\.patch_embed\.(proj|norm)\.(weight|bias)", key):
        part = "patch_embeddings.projection" if m[1] == "proj" else "norm"
        return f"{SWIN}embeddings.{part}.{m[2]}"
    if m := re.fullmatch(r"backbone\.norm(\d)\.(weight|bias)", key):
        return f"model.backbone.model.hidden_states_norms.stage{int(m[1]) + 1}.{m[2]}"
    if m := re.fullmatch(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.(.+)\.(weight|bias)", key):
        if m[3] in _BLOCK:
            return f"{SWIN}encoder.layers.{m[1]}.blocks.{m[2]}.{_BLOCK[m[3]]}.{m[4]}"
    if m := re.fullmatch(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table", key):
        return f"{SWIN}encoder.layers.{m[1]}.blocks.{m[2]}.{_BLOCK['attn.relative_position_bias_table']}"
    if m := re.fullmatch(r"backbone\.layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)", key):
        return f"{SWIN}encoder.layers.{m[1]}.downsample.{m[2]}.{m[3]}"
    if m := re.fullmatch(r"backbone\.layers\.(\d+)\.fusion\.(.+)\.(weight|bias)", key):
        if m[2] in _FUSION:
            return f"model.backbone.pixel_word_attention.{m[1]}.{_FUSION[m[2]]}.{m[3]}"
    if m := re.fullmatch(r"backbone\.layers\.(\d+)\.res_gate\.([02])\.weight", key):
        return f"model.backbone.language_gates.{m[1]}.fc{1 if m[2] == '0' else 2}.weight"
    if m := re.fullmatch(rf"backbone\.stem\.conv1\.(weight|norm\.{_BN})", key):
        part = "convolution.weight" if m[1] == "weight" else f"normalization.{m[2]}"
        return f"{RESNET}embedder.embedder.{part}"
    if m := re.fullmatch(rf"backbone\.res([2-5])\.(\d+)\.(conv[123]|shortcut)\.(weight|norm\.{_BN})", key):
        part = "convolution.weight" if m[4] == "weight" else f"normalization.{m[5]}"
        return f"{RESNET}encoder.stages.{int(m[1]) - 2}.layers.{m[2]}.{_resnet_part(m[3])}.{part}"
    if key.startswith(ORIGINAL_PIXEL_DECODER):
        rest = key[len(ORIGINAL_PIXEL_DECODER) :]
        if rest in _PIXEL_DECODER:
            return PIXEL_DECODER + _PIXEL_DECODER[rest]
        if m := re.fullmatch(r"input_proj\.(\d+)\.([01])\.(weight|bias)", rest):
            return f"{PIXEL_DECODER}input_projections.{m[1]}.{m[2]}.{m[3]}"
        if m := re.fullmatch(r"transformer\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", rest):
            name = _DEFORMABLE_LAYER.get(m[2], m[2] if m[2].startswith("self_attn.") else None)
            if name is not None:
                return f"{PIXEL_DECODER}layers.{m[1]}.{name}.{m[3]}"
    return None


def _original_key(key: str) -> str | None:
    """Inverse of :func:`rela_encoder_key` (``q/k/v_proj`` are merged by :func:`encoder_state_dict_to_rela`)."""
    if key.startswith(TEXT):
        return "text_encoder." + key[len(TEXT) :]
    if m := re.fullmatch(
        rf"{re.escape(SWIN)}embeddings\.(patch_embeddings\.projection|norm)\.(weight|bias)", key
    ):
        return f"backbone.patch_embed.{'proj' if m[1] != 'norm' else 'norm'}.{m[2]}"
    if m := re.fullmatch(r"model\.backbone\.model\.hidden_states_norms\.stage(\d)\.(weight|bias)", key):
        return f"backbone.norm{int(m[1]) - 1}.{m[2]}"
    if m := re.fullmatch(rf"{re.escape(SWIN)}encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.+)", key):
        for original, ours in _BLOCK.items():
            if m[3] == ours or m[3].startswith(ours + "."):
                return f"backbone.layers.{m[1]}.blocks.{m[2]}.{original}{m[3][len(ours) :]}"
    if m := re.fullmatch(rf"{re.escape(SWIN)}encoder\.layers\.(\d+)\.downsample\.(.+)", key):
        return f"backbone.layers.{m[1]}.downsample.{m[2]}"
    if m := re.fullmatch(r"model\.backbone\.pixel_word_attention\.(\d+)\.(\w+)\.(weight|bias)", key):
        for original, ours in _FUSION.items():
            if m[2] == ours:
                return f"backbone.layers.{m[1]}.fusion.{original}.{m[3]}"
    if m := re.fullmatch(r"model\.backbone\.language_gates\.(\d+)\.fc([12])\.weight", key):
        return f"backbone.layers.{m[1]}.res_gate.{0 if m[2] == '1' else 2}.weight"
    if m := re.fullmatch(
        rf"{re.escape(RESNET)}embedder\.embedder\.(convolution\.weight|normalization\.{_BN})", key
    ):
        return "backbone.stem.conv1." + ("weight" if m[2] is None else f"norm.{m[2]}")
    layer = rf"{re.escape(RESNET)}encoder\.stages\.(\d)\.layers\.(\d+)\.(layer\.[012]|shortcut)"
    if m := re.fullmatch(rf"{layer}\.(convolution\.weight|normalization\.{_BN})", key):
        conv = "shortcut" if m[3] == "shortcut" else f"conv{int(m[3][-1]) + 1}"
        part = "weight" if m[5] is None else f"norm.{m[5]}"
        return f"backbone.res{int(m[1]) + 2}.{m[2]}.{conv}.{part}"
    if key.startswith(PIXEL_DECODER):
        rest = key[len(PIXEL_DECODER) :]
        for original, ours in _PIXEL_DECODER.items():
            if rest == ours:
                return ORIGINAL_PIXEL_DECODER + original
        if m := re.fullmatch(r"input_projections\.(\d+)\.([01])\.(weight|bias)", rest):
            return f"{ORIGINAL_PIXEL_DECODER}input_proj.{m[1]}.{m[2]}.{m[3]}"
        if m := re.fullmatch(r"layers\.(\d+)\.(.+)\.(weight|bias)", rest):
            inverse = {ours: original for original, ours in _DEFORMABLE_LAYER.items()}
            name = inverse.get(m[2], m[2] if m[2].startswith("self_attn.") else None)
            if name is not None:
                return f"{ORIGINAL_PIXEL_DECODER}transformer.encoder.layers.{m[1]}.{name}.{m[3]}"
    return None


def encoder_state_dict_from_rela(
    rela_state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Map every encoder, pixel-decoder and text-encoder key of a ReLA state dict.

    Returns ``(state, mapped, rest)``: the refseg tensors, the ReLA keys used (recomputed buffers included,
    after :func:`check_recomputed_buffer`), and the ReLA keys no rule covers (the region decoder's and any
    unknown key), for the caller to map or refuse.
    """
    state: dict[str, torch.Tensor] = {}
    mapped, rest = [], []
    for key, value in rela_state.items():
        value = torch.as_tensor(value)
        if RECOMPUTED_BUFFERS.fullmatch(key):
            check_recomputed_buffer(key, value)
            mapped.append(key)
            continue
        if m := _QKV.fullmatch(key):
            base = f"{SWIN}encoder.layers.{m[1]}.blocks.{m[2]}.attention"
            if value.shape[0] % 3:
                raise ValueError(f"{key} has shape {tuple(value.shape)}: its first size is not 3 x the width")
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                state[f"{base}.{name}.{m[3]}"] = part.clone()
            mapped.append(key)
            continue
        new = rela_encoder_key(key)
        if new is None:
            rest.append(key)
            continue
        if ".fusion." in key and value.dim() == 3:  # Conv1d 1x1 -> Linear
            value = value[..., 0]
        state[new] = value
        mapped.append(key)
    return state, mapped, rest


def relative_position_index(window_size: int) -> torch.Tensor:
    """Swin's ``(w^2, w^2)`` int64 index into the relative position bias table (Liu et al., ICCV 2021, Sec. 3.2)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
    coords = coords.flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return relative[..., 0] * (2 * window_size - 1) + relative[..., 1]


def check_recomputed_buffer(key: str, value: torch.Tensor) -> None:
    """A buffer refseg recomputes must hold what refseg computes, or the file describes another model."""
    if key.endswith("relative_position_index"):
        window = round(value.shape[0] ** 0.5) if value.dim() == 2 else 0
        expected = relative_position_index(window) if window > 0 else None
        if expected is None or value.shape != expected.shape or not torch.equal(value.long(), expected):
            raise ValueError(f"{key} is not Swin's relative position index of a {window}x{window} window")
    elif key.endswith("position_ids"):
        if value.dim() != 2 or not torch.equal(value[0].long(), torch.arange(value.shape[-1])):
            raise ValueError(f"{key} is not 0, 1, 2, ...: BERT's positions cannot be converted")
    elif key.endswith("token_type_ids") and bool(value.any()):
        raise ValueError(f"{key} is not all zeros: BERT's token types cannot be converted")


def encoder_state_dict_to_rela(
    state: dict[str, torch.Tensor], window_sizes: dict[int, int] | None = None
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`encoder_state_dict_from_rela` for the ``model.backbone`` / ``model.text_encoder`` /
    ``model.pixel_decoder`` keys of ``state`` (other keys are ignored; :data:`FILLED_ENCODER_KEYS` dropped).

    ``window_sizes`` (Swin stage -> window) adds each block's ``relative_position_index``, as the original
    saves it. Raises ``ValueError`` naming encoder keys no rule covers.
    """
    original: dict[str, torch.Tensor] = {}
    unknown = []
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if not key.startswith(("model.backbone.", "model.text_encoder.", "model.pixel_decoder.")):
            continue
        if FILLED_ENCODER_KEYS.fullmatch(key):
            continue
        if m := re.fullmatch(
            rf"{re.escape(SWIN)}encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.([qkv])_proj\.(weight|bias)",
            key,
        ):
            qkv.setdefault(f"backbone.layers.{m[1]}.blocks.{m[2]}.attn.qkv.{m[4]}", {})[m[3]] = value
            continue
        name = _original_key(key)
        if name is None:
            unknown.append(key)
            continue
        if ".fusion." in name and value.dim() == 2:  # Linear -> Conv1d 1x1
            value = value[..., None]
        original[name] = value
    if unknown:
        raise ValueError(f"not ReLA encoder keys: {', '.join(unknown)}")
    for name, parts in qkv.items():
        original[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
        if window_sizes is not None and name.endswith(".weight"):
            stage = int(name.split(".")[2])
            index_key = name.replace("attn.qkv.weight", "attn.relative_position_index")
            original[index_key] = relative_position_index(window_sizes[stage])
    return original
