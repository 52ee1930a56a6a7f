"""Helpers shared by ``refseg demo`` and ``refseg predict``: model options and printing results."""

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
    from refseg.validation import check_probability

    check_probability(args.threshold, "--threshold")
    check_probability(args.mask_threshold, "--mask-threshold")


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
