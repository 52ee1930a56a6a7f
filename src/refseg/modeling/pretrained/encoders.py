"""Start training from pretrained encoders: load Swin and RoBERTa/BERT weights into a freshly built model.

``load_backbone`` in transformers always builds a randomly initialised backbone (transformers
``utils/backbone_utils.py``), so a model is built from its config and the encoder weights are copied in afterwards. The
checkpoints are read with the target class's own ``from_pretrained`` (``SwinBackbone``, ``RobertaModel``,
...), which handles head prefixes (``swin.``, ``roberta.``, ``bert.``), legacy key names and Hub downloads;
the weights are then copied key by key into the model's submodules with a check of every shape.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import AutoConfig

from ..backbone import VisionBackbone
from ..text_encoder import TextEncoder

logger = logging.getLogger(__name__)

_HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "force_download", "subfolder", "proxies")


@dataclass
class EncoderLoadingReport:
    """What :func:`load_pretrained_encoders` did for one encoder.

    Attributes:
        source: the Hub id or folder.
        module_path: dotted path of the receiving submodule in the model (e.g. ``model.backbone``).
        loaded_keys: parameters/buffers copied from the checkpoint.
        missing_keys: keys of the submodule not in the checkpoint (left as they were; e.g. Swin's
            ``hidden_states_norms`` when loading an ImageNet ``SwinModel``).
        unexpected_keys: checkpoint keys with no place in the submodule (classification / LM heads, pooler).
    """

    source: str
    module_path: str
    loaded_keys: list[str] = field(default_factory=list)
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)


def _find_module(model: nn.Module, kind: type[nn.Module], path: str | None) -> tuple[str, nn.Module]:
    if path is not None:
        module = model.get_submodule(path) if path else model
        if not isinstance(module, kind):
            raise ValueError(f"model.{path} is a {type(module).__name__}, expected a {kind.__name__}")
        return path, module
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, kind)]
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no {kind.__name__} submodule (build it with "
            f"refseg.modeling.{'build_vision_backbone' if kind is VisionBackbone else 'build_text_encoder'})"
        )
    if len(found) > 1:
        names = ", ".join(name for name, _ in found)
        raise ValueError(
            f"{type(model).__name__} has several {kind.__name__} submodules ({names}); pass the path"
        )
    return found[0]


def _copy_weights(
    target: nn.Module, source: nn.Module, info: dict, name: str, report: EncoderLoadingReport
) -> None:
    source_missing = set(info.get("missing_keys", ()))
    target_state = target.state_dict()
    source_state = {k: v for k, v in source.state_dict().items() if k not in source_missing}
    common = [k for k in target_state if k in source_state]
    mismatched = [
        f"{k}: checkpoint {tuple(source_state[k].shape)} vs model {tuple(target_state[k].shape)}"
        for k in common
        if source_state[k].shape != target_state[k].shape
    ]
    if mismatched:
        shown = "\n  ".join(mismatched[:10])
        more = f"\n  ... and {len(mismatched) - 10} more" if len(mismatched) > 10 else ""
        raise ValueError(
            f"the {name} checkpoint {report.source!r} does not fit the model's {name} config; "
            f"{len(mismatched)} shape mismatch(es):\n  {shown}{more}"
        )
    if not common:
        raise ValueError(
            f"the {name} checkpoint {report.source!r} shares no weight names with the model's "
            f"{type(target).__name__}; is it the right kind of model?"
        )
    with torch.no_grad():
        for key in common:
            target_state[key].copy_(source_state[key])
    named = dict(target.named_parameters())
    named.update(target.named_buffers())
    for key in common:  # tell transformers' init helpers that these weights come from a checkpoint
        if key in named:
            named[key]._is_hf_initialized = True
    report.loaded_keys = common
    report.missing_keys = sorted(k for k in target_state if k not in source_state)
    unexpected = {k for k in source.state_dict() if k not in target_state}
    report.unexpected_keys = sorted(unexpected | set(info.get("unexpected_keys", ())))


def load_pretrained_encoders(
    model: nn.Module,
    vision: str | None = None,
    text: str | None = None,
    *,
    vision_module: str | None = None,
    text_module: str | None = None,
    **from_pretrained_kwargs,
) -> dict[str, EncoderLoadingReport]:
    """Copy pretrained vision and text encoder weights into ``model`` in place.

    Args:
        model: any module containing exactly one :class:`~refseg.modeling.backbone.VisionBackbone` (from
            ``build_vision_backbone``) and one :class:`~refseg.modeling.text_encoder.TextEncoder` (from
            ``build_text_encoder``); they are found by type, wherever they sit.
        vision: Hub id or local folder of a Swin checkpoint (``SwinModel``, ``SwinBackbone``,
            ``SwinForImageClassification``, ...), or ``None`` to skip.
        text: Hub id or local folder of a ``RobertaModel`` / ``BertModel`` checkpoint (or a head model such
            as ``RobertaForMaskedLM``), or ``None`` to skip.
        vision_module, text_module: dotted paths of the receiving submodules (e.g. ``"model.backbone"``),
            when searching by type is ambiguous.
        **from_pretrained_kwargs: forwarded to ``from_pretrained`` (``revision``, ``cache_dir``, ``token``...).

    Returns:
        ``{"vision": EncoderLoadingReport, "text": EncoderLoadingReport}`` for the encoders loaded.

    Raises:
        ValueError: when a receiving submodule cannot be found, the checkpoint is another kind of model
            (its ``model_type`` differs from the encoder's), a weight has a different shape than in the
            model (the checkpoint's architecture differs from the model's config), or nothing matches.
    """
    reports: dict[str, EncoderLoadingReport] = {}
    jobs = []
    if vision is not None:
        jobs.append(("vision", vision, *_find_module(model, VisionBackbone, vision_module)))
    if text is not None:
        jobs.append(("text", text, *_find_module(model, TextEncoder, text_module)))
    for name, source_id, path, wrapper in jobs:
        target = wrapper.model
        kwargs = dict(from_pretrained_kwargs, output_loading_info=True)
        if name == "vision":
            kwargs["out_features"] = list(target.config.out_features)
        elif hasattr(target, "pooler"):
            kwargs["add_pooling_layer"] = target.pooler is not None
        hub_kwargs = {k: v for k, v in from_pretrained_kwargs.items() if k in _HUB_KWARGS}
        source_type = AutoConfig.from_pretrained(str(source_id), **hub_kwargs).model_type
        if source_type != target.config.model_type:
            raise ValueError(
                f"the {name} checkpoint {source_id!r} is a {source_type!r} model but the model's {name} encoder "
                f"is {target.config.model_type!r}; build the model with a matching {name} config"
            )
        source, info = type(target).from_pretrained(str(source_id), **kwargs)
        report = EncoderLoadingReport(source=str(source_id), module_path=f"{path}.model" if path else "model")
        _copy_weights(target, source, info, name, report)
        logger.info(
            "loaded %d %s weights from %s into %s; missing: %s; unexpected: %s",
            len(report.loaded_keys),
            name,
            source_id,
            report.module_path,
            report.missing_keys or "none",
            report.unexpected_keys or "none",
        )
        reports[name] = report
        del source
    return reports
