"""What the InstanceVG converter checks before it converts: the checkpoint must be exactly the model it claims.

A checkpoint of a released model's encoder width (768 or 1024), or any checkpoint converted with ``--preset``,
is compared with the model that its preset (``b-grefcoco``, ``b-refcoco``, ``l-refcoco``, chosen from the
encoder width and the query count, or named) and ``--config_overrides`` describe, in the released layout
(docs/models/instancevg.md, "Converting the released checkpoints"). A checkpoint of another width (a reduced or
custom model) gets the sizes its shapes fix as its config (:mod:`refseg.models.instancevg.convert_sizes`).
Either way:

* every value must be finite (a file of NaN or inf is refused as such);
* the encoder and decoder layer counts must be the config's, numbered without gaps: a missing or extra layer is
  an error naming it (a file that lost its last layer must not convert into a shallower model);
* every expected key must be present, no other key may be, and every tensor must have the expected shape
  (a transposed tensor is named as such); an override that the weights contradict is refused as such.

Every error is one ``ValueError`` of one line.
"""

from __future__ import annotations

import json
import re
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError

from ...modeling.pretrained.checkpoint_checks import (
    check_finite,
    check_keys,
    shape_message,
    shape_problems,
)
from .configuration_instancevg import InstanceVGConfig
from .convert_sizes import (
    DECODER_LAYER,
    ENCODER_LAYER,
    ENCODER_PREFIX,
    as_config_values,
    encoder_width,
    read_sizes,
)


def infer_preset(state_dict: dict[str, torch.Tensor]) -> str:
    """``l-refcoco`` for a large encoder, ``b-refcoco`` for one query, ``b-grefcoco`` otherwise."""
    width = encoder_width(state_dict)
    if width is None:
        raise ValueError(
            "not an InstanceVG checkpoint: it has none of the BEiT-3 encoder keys (vis_enc.beit3.*)"
        )
    queries = state_dict.get("head.query_generation.query_embed.weight")
    channels = state_dict.get("head.img_embedding.weight")
    num_queries = None
    if queries is not None and queries.dim() == 2:
        num_queries = queries.shape[0]
        if channels is not None and queries.shape[0] == channels.shape[0] != queries.shape[1]:
            num_queries = queries.shape[1]  # stored transposed: blamed by the shape check
    if width >= 1024:
        return "l-refcoco"
    return "b-refcoco" if num_queries == 1 else "b-grefcoco"


def build_config(preset: str, overrides: dict[str, Any] | None) -> InstanceVGConfig:
    """``InstanceVGConfig.preset(preset, **overrides)``; an unknown override field is an error."""
    overrides = dict(overrides or {})
    known = set(InstanceVGConfig.preset(preset).to_dict())
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"--config_overrides: unknown InstanceVG config field(s): {', '.join(unknown)}")
    try:
        return InstanceVGConfig.preset(preset, **overrides)
    except (
        TypeError,
        ValueError,
        StrictDataclassError,
    ) as error:  # a value of the wrong type or out of range
        raise ValueError(f"--config_overrides: {' '.join(str(error).split())}") from error


def expected_layout(config: InstanceVGConfig) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the released checkpoint of the model ``config`` describes (built on the meta device)."""
    from .convert_instancevg import state_dict_to_original
    from .modeling_instancevg import InstanceVGForReferringSegmentation

    with torch.device("meta"):
        model = InstanceVGForReferringSegmentation(config)
    original = state_dict_to_original(model.state_dict(), config.num_queries, config.decoder_layers)
    return {key: tuple(tensor.shape) for key, tensor in original.items()}


def _layer_ids(state_dict: dict[str, torch.Tensor], pattern: re.Pattern[str]) -> set[int]:
    return {int(m[1]) for key in state_dict if (m := pattern.match(key))}


def _ids(ids: set[int]) -> str:
    return ", ".join(str(i) for i in sorted(ids))


def check_layer_counts(
    state_dict: dict[str, torch.Tensor], config: InstanceVGConfig, source: str, overridden: set[str]
) -> None:
    """The encoder and decoder layers in the file must be exactly ``0 .. n-1`` of the config's ``n``."""
    parts = (
        (
            "encoder",
            ENCODER_LAYER,
            config.encoder_config.num_hidden_layers,
            "encoder_config.num_hidden_layers",
            ENCODER_PREFIX + "encoder.layers.",
        ),
        (
            "decoder",
            DECODER_LAYER,
            config.decoder_layers,
            "decoder_layers",
            "head.decoder_transformer.decoder.layers.",
        ),
    )
    for name, pattern, count, field, prefix in parts:
        found = _layer_ids(state_dict, pattern)
        missing, extra = set(range(count)) - found, found - set(range(count))
        if not missing and not extra:
            continue
        has = f"the checkpoint has {len(found)} {name} layer(s)" + (f" ({_ids(found)})" if found else "")
        if field in overridden:
            raise ValueError(
                f"--config_overrides contradicts the weights: it asks for {count} {name} layers, but {has}"
            )
        what = []
        if missing:
            what.append(f"lacks {name} layer(s) {_ids(missing)} ({prefix}{min(missing)}.*)")
        if extra:
            what.append(f"has extra {name} layer(s) {_ids(extra)}")
        raise ValueError(
            f"the checkpoint {' and '.join(what)}: the {source} has {count} {name} layers and {has}; the file is "
            "incomplete or not this model, and is not converted"
        )


def check_layout(
    state_dict: dict[str, torch.Tensor],
    config: InstanceVGConfig,
    source: str,
    without_overrides: InstanceVGConfig | None = None,
    overrides: dict[str, Any] | None = None,
) -> None:
    """Every expected key present, no other key, every shape as expected (a transposed tensor named).

    ``without_overrides``: the config the preset alone gives; a shape that it would accept and the overridden
    config does not is blamed on ``overrides``.
    """
    layout = expected_layout(config)
    check_keys(state_dict, layout, source, "InstanceVG")
    problems = shape_problems(state_dict, layout)
    if not problems:
        return
    if (
        overrides
        and without_overrides is not None
        and not shape_problems(state_dict, expected_layout(without_overrides))
    ):
        key, found, expected = problems[0]
        raise ValueError(
            f"--config_overrides {json.dumps(overrides)} contradicts the weights: {key} has shape {found} in the "
            f"checkpoint, the overridden config expects {expected}"
        )
    raise ValueError(shape_message(problems, source))


def _overridden(overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides flattened to config fields (``encoder_config.x`` for the encoder)."""
    flat = {k: v for k, v in overrides.items() if k != "encoder_config"}
    flat.update({f"encoder_config.{k}": v for k, v in (overrides.get("encoder_config") or {}).items()})
    return flat


def _config_from_sizes(
    state_dict: dict[str, torch.Tensor], preset: str, overrides: dict[str, Any]
) -> InstanceVGConfig:
    """A model of another size than the released ones: the sizes the weights fix become the config."""
    base = build_config(preset, overrides)
    sizes = read_sizes(state_dict, base.decoder_num_heads)
    for field, value in _overridden(overrides).items():
        if field in sizes and sizes[field][0] != value:
            size, evidence = sizes[field]
            raise ValueError(
                f"--config_overrides contradicts the weights: it sets {field} = {value}, but the checkpoint has "
                f"{size} ({evidence})"
            )
    values = as_config_values(sizes)
    values["encoder_config"].update(overrides.get("encoder_config") or {})
    rest = {k: v for k, v in overrides.items() if k != "encoder_config"}
    return InstanceVGConfig.preset(preset, **{**values, **rest})


def checked_config(
    state_dict: dict[str, torch.Tensor], preset: str | None = None, overrides: dict[str, Any] | None = None
) -> InstanceVGConfig:
    """The config of the checkpoint after every check of this module; raises ``ValueError`` otherwise.

    With ``preset`` named, or inferred for a file of a released model's encoder width (768 or 1024), the file
    must be exactly that preset with ``overrides``: a partial file is refused. A file of another width (a
    reduced or custom model) gets the sizes it fixes as its config, ``overrides`` supplying what the shapes
    cannot tell (attention heads...); its layers must still be numbered without gaps.
    """
    check_finite(state_dict)
    overrides = dict(overrides or {})
    chosen = preset or infer_preset(state_dict)
    released = build_config(chosen, None)
    strict = preset is not None or encoder_width(state_dict) == released.encoder_config.hidden_size
    if strict:
        config = build_config(chosen, overrides)
        source = f"{chosen} preset" + (" with --config_overrides" if overrides else "")
    else:
        config = _config_from_sizes(state_dict, chosen, overrides)
        source = "config read from the checkpoint's shapes"
    check_layer_counts(state_dict, config, source, set(_overridden(overrides)) if strict else set())
    check_layout(state_dict, config, source, released if strict else None, overrides)
    return config


__all__ = [
    "build_config",
    "check_finite",
    "check_layer_counts",
    "check_layout",
    "checked_config",
    "expected_layout",
    "infer_preset",
]
