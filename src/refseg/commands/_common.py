"""Helpers shared by ``refseg demo`` and ``refseg predict``: loading a pipeline and printing results."""

from __future__ import annotations

import argparse
from typing import Any


def add_model_arguments(parser: argparse.ArgumentParser, default_help: str) -> None:
    parser.add_argument("--model", default=None, help=f"model folder or Hub id ({default_help})")
    parser.add_argument("--threshold", type=float, default=0.5, help="instance score threshold (default 0.5)")
    parser.add_argument(
        "--mask-threshold", type=float, default=0.5, help="mask probability threshold (default 0.5)"
    )
    parser.add_argument(
        "--device",
        default=None,
        help="torch device for the model, e.g. cpu or cuda:0 (default: cuda if available)",
    )


def check_thresholds(args: argparse.Namespace) -> None:
    """Refuse ``--threshold`` / ``--mask-threshold`` outside [0, 1] before any model is loaded."""
    from ..validation import check_probability

    check_probability(args.threshold, "--threshold")
    check_probability(args.mask_threshold, "--mask-threshold")


def load_pipeline(model: str | None, device: str | None = None):
    """``pipeline("referring-segmentation")`` for ``model`` (default: the bundled demo model).

    The model goes through ``refseg.pipelines.load_referring_segmentation_model``: a missing folder,
    a folder that is not a refseg model, unreadable weights or missing weights are refused with one
    clear message. Returns ``(pipeline, model path or id)``.
    """
    import torch
    from transformers import AutoProcessor, pipeline
    from transformers.utils import logging as hf_logging

    import refseg

    from ..pipelines.loading import load_referring_segmentation_model

    if model is None:
        try:
            path = refseg.demo_model_path()
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{err}; pass a trained model with --model PATH_OR_HUB_ID") from err
    else:
        path = model
    if device is None:
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # refseg reports problems itself, in one line
    hf_logging.disable_progress_bar()
    try:
        loaded = load_referring_segmentation_model(path)
        try:
            processor = AutoProcessor.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot load the processor of {path}: {err}") from err
        return pipeline("referring-segmentation", model=loaded, processor=processor, device=device), path
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def describe(sentence: str, result: dict[str, Any]) -> str:
    """One human-readable block: sentence, decision, score, instances and their boxes."""
    lines = [f'"{sentence}"']
    if result["no_target"]:
        lines.append(f"  -> no target (p(target) = {result['score']:.2f})")
    else:
        lines.append(f"  -> {len(result['instances'])} instance(s), p(target) = {result['score']:.2f}")
        for inst in result["instances"]:
            b = inst["box"]
            lines.append(
                f"     score {inst['score']:.2f}  box [x0={b['xmin']}, y0={b['ymin']}, x1={b['xmax']}, y1={b['ymax']}]"
            )
    return "\n".join(lines)
