"""Checkpoints in the released ReLA layout (detectron2 names), written from the original code's module tree
(``docs/models/rela.md``): the multimodal Swin, ResNet-50, pixel decoder, BERT and the ReLA decoder.

Written by hand, not by inverting refseg's key map, so that the converter is tested against names it did not
produce. Every tensor is random (zero-initialised gates or language weights would hide a wrong mapping).
"""

import torch

from refseg.modeling.pretrained.rela_keys import relative_position_index


def _swin(config, r):
    """ReLA's multimodal Swin (``MultiModalSwinTransformer``) under ``backbone.``: blocks, PWAM, gates, norms."""
    swin = config.backbone_config
    window, embed = swin.window_size, swin.embed_dim
    text_dim = config.text_config.hidden_size
    sd = {"backbone.patch_embed.proj.weight": r(embed, 3, 4, 4), "backbone.patch_embed.proj.bias": r(embed)}
    sd.update({"backbone.patch_embed.norm.weight": r(embed), "backbone.patch_embed.norm.bias": r(embed)})
    for i, (depth, heads) in enumerate(zip(swin.depths, swin.num_heads)):
        c = embed * 2**i
        for j in range(depth):
            b = f"backbone.layers.{i}.blocks.{j}."
            sd.update(
                {
                    b + "norm1.weight": r(c),
                    b + "norm1.bias": r(c),
                    b + "norm2.weight": r(c),
                    b + "norm2.bias": r(c),
                }
            )
            sd.update({b + "attn.qkv.weight": r(3 * c, c), b + "attn.qkv.bias": r(3 * c)})
            sd.update({b + "attn.proj.weight": r(c, c), b + "attn.proj.bias": r(c)})
            sd[b + "attn.relative_position_bias_table"] = r((2 * window - 1) ** 2, heads)
            sd[b + "attn.relative_position_index"] = relative_position_index(window)
            sd.update({b + "mlp.fc1.weight": r(4 * c, c), b + "mlp.fc1.bias": r(4 * c)})
            sd.update({b + "mlp.fc2.weight": r(c, 4 * c), b + "mlp.fc2.bias": r(c)})
        f = f"backbone.layers.{i}.fusion."
        for name, cin in (
            ("vis_project.0", c), ("project_mm.0", c), ("image_lang_att.f_query.0", c),
            ("image_lang_att.f_key.0", text_dim), ("image_lang_att.f_value.0", text_dim), ("image_lang_att.W.0", c),
        ):  # fmt: skip
            sd.update({f + name + ".weight": r(c, cin, 1), f + name + ".bias": r(c)})
        if i < 3:
            d = f"backbone.layers.{i}."
            sd.update(
                {d + "downsample.reduction.weight": r(2 * c, 4 * c), d + "downsample.norm.weight": r(4 * c)}
            )
            sd.update(
                {
                    d + "downsample.norm.bias": r(4 * c),
                    d + "res_gate.0.weight": r(c, c),
                    d + "res_gate.2.weight": r(c, c),
                }
            )
        sd.update({f"backbone.norm{i}.weight": r(c), f"backbone.norm{i}.bias": r(c)})
    return sd


def rela_state_dict(config, text_state, seed=0):
    """Random tensors under ReLA's detectron2 names of the multimodal Swin, the pixel decoder and BERT, with
    ReLA's shapes (Conv1d, fused qkv, d2 FPN convs); a ResNet config gets no backbone here
    (:func:`rela_resnet_state_dict`)."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    backbone, hidden = config.backbone_config, config.hidden_dim
    if backbone.model_type == "swin":
        sd = _swin(config, r)
        channels = [backbone.embed_dim * 2**i for i in range(4)]
    else:
        sd, channels = {}, list(backbone.hidden_sizes)
    embed = channels[0]
    p = "sem_seg_head.pixel_decoder."
    for k, c in enumerate(channels[:0:-1]):
        sd.update({f"{p}input_proj.{k}.0.weight": r(hidden, c, 1, 1), f"{p}input_proj.{k}.0.bias": r(hidden)})
        sd.update({f"{p}input_proj.{k}.1.weight": r(hidden), f"{p}input_proj.{k}.1.bias": r(hidden)})
    sd[f"{p}transformer.level_embed"] = r(3, hidden)
    heads, points, ffn = config.num_heads, config.pixel_decoder_num_points, config.pixel_decoder_ffn_dim
    for k in range(config.pixel_decoder_layers):
        e = f"{p}transformer.encoder.layers.{k}."
        for name, shape in (
            ("self_attn.sampling_offsets", (heads * 3 * points * 2, hidden)), ("self_attn.attention_weights", (heads * 3 * points, hidden)),
            ("self_attn.value_proj", (hidden, hidden)), ("self_attn.output_proj", (hidden, hidden)),
            ("linear1", (ffn, hidden)), ("linear2", (hidden, ffn)),
        ):  # fmt: skip
            sd.update({e + name + ".weight": r(*shape), e + name + ".bias": r(shape[0])})
        for name in ("norm1", "norm2"):
            sd.update({e + name + ".weight": r(hidden), e + name + ".bias": r(hidden)})
    sd.update({f"{p}adapter_1.weight": r(hidden, embed, 1, 1), f"{p}adapter_1.norm.weight": r(hidden)})
    sd.update({f"{p}adapter_1.norm.bias": r(hidden), f"{p}layer_1.weight": r(hidden, hidden, 3, 3)})
    sd.update({f"{p}layer_1.norm.weight": r(hidden), f"{p}layer_1.norm.bias": r(hidden)})
    sd.update(
        {
            f"{p}mask_features.weight": r(config.mask_dim, hidden, 1, 1),
            f"{p}mask_features.bias": r(config.mask_dim),
        }
    )
    sd.update(
        {f"text_encoder.{k}": r(*v.shape) if v.is_floating_point() else v for k, v in text_state.items()}
    )
    return sd


def _attention(r, prefix, width):
    """``nn.MultiheadAttention``'s tensors (packed q;k;v input projection)."""
    return {
        prefix + "in_proj_weight": r(3 * width, width),
        prefix + "in_proj_bias": r(3 * width),
        prefix + "out_proj.weight": r(width, width),
        prefix + "out_proj.bias": r(width),
    }


def rela_predictor_state_dict(config, seed=1):
    """ReLA's decoder (``MultiScaleMaskedReferringDecoder``) under ``sem_seg_head.predictor.``, in its order."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    c, ffn, queries = config.hidden_dim, config.decoder_ffn_dim, config.num_queries
    norm = lambda prefix: {prefix + "weight": 1 + 0.2 * r(c), prefix + "bias": 0.1 * r(c)}  # noqa: E731
    p = "sem_seg_head.predictor."
    sd = {p + "lang_weight": r(())}
    for k in range(config.decoder_layers):
        sd.update(_attention(r, f"{p}RLA_vision.{k}.self_attn.", c) | norm(f"{p}RLA_vision.{k}.norm."))
    for k in range(config.decoder_layers):
        sd.update(_attention(r, f"{p}RIA_layers.{k}.multihead_attn.", c) | norm(f"{p}RIA_layers.{k}.norm."))
    for k in range(config.decoder_layers):
        f = f"{p}transformer_ffn_layers.{k}."
        sd.update({f + "linear1.weight": r(ffn, c), f + "linear1.bias": r(ffn)})
        sd.update({f + "linear2.weight": r(c, ffn), f + "linear2.bias": r(c)} | norm(f + "norm."))
    sd.update(norm(p + "decoder_norm."))
    sd.update({p + "query_feat.weight": r(queries, c), p + "query_embed.weight": r(queries, c)})
    sd[p + "lang_proj.weight"] = r(c, config.text_config.hidden_size) / 4
    sd.update(_attention(r, p + "RLA_lang_att.multihead_attn.", c) | norm(p + "RLA_lang_att.norm."))
    sd[p + "level_embed.weight"] = r(3, c)
    sd.update({p + "minimap_embed.weight": r(2, c), p + "minimap_embed.bias": r(2)})
    sd.update({p + "nt_embed.layers.0.weight": r(c, c), p + "nt_embed.layers.0.bias": r(c)})
    sd.update({p + "nt_embed.layers.1.weight": r(2, c), p + "nt_embed.layers.1.bias": r(2)})
    for i in range(3):
        out = config.mask_dim if i == 2 else c
        sd.update({f"{p}mask_embed.layers.{i}.weight": r(out, c), f"{p}mask_embed.layers.{i}.bias": r(out)})
    return sd


def rela_resnet_state_dict(resnet_config, seed=2):
    """detectron2's ResNet (stem + ``res2``..``res5`` bottlenecks, frozen batch norms) under ``backbone.``."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731

    def conv(prefix, out, cin, k):
        return {
            prefix + "weight": r(out, cin, k, k) / (cin * k * k) ** 0.5,
            prefix + "norm.weight": 1 + 0.2 * r(out),
            prefix + "norm.bias": 0.1 * r(out),
            prefix + "norm.running_mean": 0.1 * r(out),
            prefix + "norm.running_var": 0.5 + r(out).abs(),
        }

    width = resnet_config.embedding_size
    sd = conv("backbone.stem.conv1.", width, 3, 7)
    cin = width
    for s, (depth, out) in enumerate(zip(resnet_config.depths, resnet_config.hidden_sizes), start=2):
        mid = out // 4
        for b in range(depth):
            block = f"backbone.res{s}.{b}."
            if b == 0:
                sd.update(conv(block + "shortcut.", out, cin, 1))
            sd.update(conv(block + "conv1.", mid, cin if b == 0 else out, 1))
            sd.update(conv(block + "conv2.", mid, mid, 3))
            sd.update(conv(block + "conv3.", out, mid, 1))
        cin = out
    return sd


def rela_checkpoint(config, text_state, seed=0):
    """A whole ReLA state dict for ``config`` (Swin with PWAM, or a ResNet with ``encoder_fusion="none"``)."""
    sd = rela_state_dict(config, text_state, seed)
    if config.encoder_fusion == "none":
        sd.update(rela_resnet_state_dict(config.backbone_config, seed + 2))
    return sd | rela_predictor_state_dict(config, seed + 1)
