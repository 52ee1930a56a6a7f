"""Helpers shared by ``refseg demo`` and ``refseg predict``: model options and printing results."""

from __future__ import annotations

import argparse
import contextlib
import logging
import warnings
from collections.abc import Iterator
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


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence what the libraries print while a command runs: transformers' progress bars and info, the
    warnings torch's ONNX exporter and onnxscript log on success (their errors still show), deprecation
    warnings of their internals. The command prints its own result; ``--debug`` is not affected by this."""
    from transformers.utils import logging as hf_logging

    loggers = {name: logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")}
    levels = {name: logger.level for name, logger in loggers.items()}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    for logger in loggers.values():
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
            yield
    finally:
        for name, logger in loggers.items():
            logger.setLevel(levels[name])
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
