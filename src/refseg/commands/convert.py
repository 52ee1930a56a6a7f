"""``refseg convert``: turn a released checkpoint of an original implementation into a refseg model folder.

``refseg convert instancevg CHECKPOINT.pth --output DIR [--tokenizer beit3.spm] [--config_overrides JSON]``
writes a folder that ``from_pretrained`` and ``pipeline("referring-segmentation", model=DIR)`` load.
"""

from __future__ import annotations

import argparse
import sys
import traceback

MODEL_TYPES = ("instancevg",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``refseg convert``."""
    parser.add_argument("model_type", choices=MODEL_TYPES, help="architecture of the checkpoint")
    parser.add_argument("checkpoint", help="the released checkpoint file (e.g. InstanceVG-grefcoco.pth)")
    parser.add_argument("--output", required=True, help="folder to write the converted model to")
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="BEiT-3 sentencepiece model (beit3.spm) to bundle the text tokenizer (needs sentencepiece)",
    )
    parser.add_argument(
        "--config_overrides",
        default=None,
        help="JSON object of config fields to set, e.g. '{\"score_threshold\": 0.9}' (sizes come from the weights)",
    )
    parser.add_argument(
        "--preset",
        default=None,
        help="config preset for what the weights cannot tell (default: inferred, b-grefcoco / b-refcoco / l-refcoco)",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def run(args: argparse.Namespace) -> int:
    """Convert; one error line on stderr and exit status 1 on a user error (``--debug`` shows the traceback)."""
    try:
        from ..models.instancevg.convert_instancevg import convert_checkpoint, parse_overrides

        model = convert_checkpoint(
            args.checkpoint,
            args.output,
            tokenizer=args.tokenizer,
            config_overrides=parse_overrides(args.config_overrides),
            preset=args.preset,
        )
    except (ValueError, FileNotFoundError, ImportError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"refseg convert: error: {err}", file=sys.stderr)
        return 1
    count = sum(p.numel() for p in model.parameters())
    print(f"refseg convert: wrote {args.output} ({count:,} parameters)")
    if args.tokenizer is None:
        print(
            "refseg convert: no --tokenizer given: add BEiT-3's beit3.spm to use the processor and pipeline"
        )
    return 0
