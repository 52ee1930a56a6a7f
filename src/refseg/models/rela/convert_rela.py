"""Convert a released ReLA checkpoint (gRefCOCO, Swin-B / Swin-T / R-50) into a refseg model folder.

``refseg convert rela CHECKPOINT.pth --output DIR --tokenizer bert-base-uncased/ [--preset ...]
[--config-overrides JSON] [--push-to-hub ORG/NAME]``

The file is read safely (:func:`refseg.modeling.pretrained.read_state_dict`: tensors, plain containers and
numpy scalars only; detectron2's ``{"model": state_dict, "iteration": ...}`` or a bare state dict; ``module.``
stripped). Detectron2 ``.pkl`` files are refused: reading them needs pickle, which could run code. Everything
the file fixes is checked against the preset (:mod:`refseg.models.rela.convert_checks`), the keys are mapped
(:mod:`refseg.models.rela.convert_keys`), and the folder (weights, config, image processor, BERT tokenizer) is
written next to ``DIR`` and renamed into place at the end. ``docs/models/rela.md`` has the commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...modeling.pretrained.converted_folder import check_destination, write_folder
from ...modeling.pretrained.files import read_state_dict
from ...modeling.pretrained.rela_keys import FILLED_ENCODER_KEYS, RECOMPUTED_BUFFERS
from .configuration_rela import RelaConfig
from .convert_checks import checked_config, infer_preset
from .convert_keys import convert_rela_state_dict
from .convert_tokenizer import MISSING_TOKENIZER, check_tokenizer_fits, load_bert_tokenizer
from .image_processing_rela import RelaImageProcessor
from .modeling_rela import RelaForReferringSegmentation
from .processing_rela import RelaProcessor

__all__ = ["RelaConversionReport", "convert_checkpoint", "load_rela_checkpoint", "read_rela_state_dict"]


@dataclass
class RelaConversionReport:
    """What :func:`load_rela_checkpoint` did.

    Attributes:
        preset: the preset the config starts from (named or inferred from the backbone).
        converted: checkpoint keys mapped onto the model (a Swin ``attn.qkv`` counts once).
        recomputed: checkpoint buffers that refseg recomputes, checked equal to what it computes (Swin's
            ``relative_position_index``, BERT's ``position_ids``).
        filled: model keys the file cannot hold, left at their initial values (none for the released
            layouts: the Swin has no final LayerNorm, as in the released code; a ResNet's batch-norm counters,
            absent from detectron2's frozen batch norms, are set to 0 by PyTorch's loading and not listed).
        language_gates_closed: whether every language gate matrix is zero (as the released training leaves
            them: zero-initialised, they get no gradient); ``None`` for the R-50, which has none.
        parameters: the converted model's parameter count.
    """

    preset: str
    converted: int
    recomputed: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    language_gates_closed: bool | None = None
    parameters: int = 0


def read_rela_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ReLA checkpoint file, read without running code; ``.pkl`` files are refused."""
    if str(path).endswith(".pkl"):
        raise ValueError(
            f"{path} is a pickle file (.pkl): reading it could run code, so refseg does not. Convert the released "
            ".pth file, or re-save the weights with torch.save or safetensors in an environment you trust"
        )
    return read_state_dict(path, what="ReLA checkpoint")


def load_rela_checkpoint(
    checkpoint: str | Path | dict[str, torch.Tensor],
    preset: str | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> tuple[RelaForReferringSegmentation, RelaConversionReport]:
    """A :class:`RelaForReferringSegmentation` (eval mode) with the weights of a released ReLA checkpoint.

    Args:
        checkpoint: the file (``.pth`` / ``.safetensors``) or its state dict in the original's names.
        preset: ``swin-base``, ``swin-tiny``, ``r50`` (inferred from the backbone when ``None``) or any
            :class:`RelaConfig` preset.
        config_overrides: config fields to set (``image_size``, ``max_text_length``...; sizes the file fixes
            must agree with it).

    Raises:
        ValueError: one line naming what does not fit (missing, extra or misshapen tensors, sizes other than
            the preset's, non-finite values, an unsafe or unreadable file).
    """
    state_dict = checkpoint if isinstance(checkpoint, dict) else read_rela_state_dict(checkpoint)
    config = checked_config(state_dict, preset, config_overrides)
    converted, unexpected = convert_rela_state_dict(state_dict)
    if unexpected:  # the layout check above accepted them: a key map and layout out of step
        raise ValueError(f"no rule maps the checkpoint keys {', '.join(unexpected[:5])}")
    model = RelaForReferringSegmentation(config)
    result = model.load_state_dict(converted, strict=False)
    filled = sorted(result.missing_keys)
    not_filled = [key for key in filled if not FILLED_ENCODER_KEYS.fullmatch(key)]
    if not_filled or result.unexpected_keys:
        raise ValueError(
            f"the converted weights do not fit the model: {(not_filled + result.unexpected_keys)[:5]}"
        )
    gates = [t for k, t in state_dict.items() if ".res_gate." in k]
    report = RelaConversionReport(
        preset=preset or infer_preset(state_dict),
        converted=sum(1 for k in state_dict if not RECOMPUTED_BUFFERS.fullmatch(k)),
        recomputed=[k for k in state_dict if RECOMPUTED_BUFFERS.fullmatch(k)],
        filled=filled,
        language_gates_closed=all(not bool(t.any()) for t in gates) if gates else None,
        parameters=sum(p.numel() for p in model.parameters()),
    )
    return model.eval(), report


def convert_checkpoint(
    checkpoint: str | Path,
    output_dir: str | Path,
    tokenizer: str | Path | None,
    config_overrides: dict[str, Any] | None = None,
    preset: str | None = None,
) -> tuple[RelaForReferringSegmentation, RelaConversionReport]:
    """Convert ``checkpoint`` and write weights (safetensors), config and processor to ``output_dir``.

    ``tokenizer``: a local copy of bert-base-uncased's tokenizer (folder or ``vocab.txt``); required, since a
    folder without it cannot be used by the processor or the pipeline. Everything is checked before anything is
    written; the folder is written next to ``output_dir`` and renamed at the end, so an error leaves no
    half-written folder (and a previous conversion in place).
    """
    output_dir = Path(output_dir)
    check_destination(output_dir, RelaConfig.model_type, "ReLA")
    if tokenizer is None:
        raise ValueError(MISSING_TOKENIZER)
    text_tokenizer = load_bert_tokenizer(tokenizer)  # cheap refusals before reading a 1 GB file
    model, report = load_rela_checkpoint(checkpoint, preset, config_overrides)
    config = model.config
    check_tokenizer_fits(text_tokenizer, config.text_config.vocab_size, tokenizer)
    text_tokenizer.model_max_length = config.max_text_length
    processor = RelaProcessor(RelaImageProcessor(size=config.image_size), text_tokenizer)

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)

    write_folder(output_dir, write)
    return model, report
