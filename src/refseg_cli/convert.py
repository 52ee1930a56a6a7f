"""``refseg convert``: turn a released checkpoint of an original implementation into a refseg model folder.

``refseg convert instancevg CHECKPOINT.pth --output DIR [--tokenizer beit3.spm] [--config-overrides JSON]`` and
``refseg convert rela CHECKPOINT.pth --output DIR --tokenizer bert-base-uncased/ [--preset swin-base|swin-tiny|r50]``
write a folder that ``from_pretrained`` and ``pipeline("referring-segmentation", model=DIR)`` load. Everything
is checked before anything is written, and every refusal is one plain line on stderr with exit status 1.
``--push-to-hub ORG/NAME [--private]`` then adds a model card, creates the Hub repository (if needed) and
uploads the folder with ``huggingface_hub``; the token is the usual one (``HF_TOKEN`` or ``hf auth login``).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Any

from refseg.error_messages import one_line

MODEL_TYPES = ("instancevg", "rela")
# what --push-to-hub's model card says each model is, and where its page is
_CARD_NAMES = {"instancevg": "InstanceVG", "rela": "ReLA (GRES)"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``refseg convert``."""
    parser.add_argument("model_type", choices=MODEL_TYPES, help="architecture of the checkpoint")
    parser.add_argument(
        "checkpoint", help="the released checkpoint file (e.g. InstanceVG-grefcoco.pth, gres_swin_base.pth)"
    )
    parser.add_argument("--output", required=True, help="folder to write the converted model to")
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="the text tokenizer to bundle: instancevg: BEiT-3's sentencepiece model beit3.spm (needs "
        "sentencepiece); rela (required): bert-base-uncased's tokenizer folder or vocab.txt",
    )
    parser.add_argument(
        "--config-overrides",
        "--config_overrides",  # the spelling of examples/train.py, kept as an alias
        dest="config_overrides",
        default=None,
        help="JSON object of config fields to set, e.g. '{\"score_threshold\": 0.9}' (sizes come from the weights)",
    )
    parser.add_argument(
        "--preset",
        default=None,
        help="config preset for what the weights cannot tell (default: inferred; instancevg: b-grefcoco / "
        "b-refcoco / l-refcoco; rela: swin-base / swin-tiny / r50)",
    )
    parser.add_argument(
        "--push-to-hub",
        "--push_to_hub",
        dest="push_to_hub",
        default=None,
        metavar="ORG/NAME",
        help="after writing the folder, create this Hub model repository (if needed) and upload the folder "
        "(token: HF_TOKEN or `hf auth login`)",
    )
    parser.add_argument(
        "--private", action="store_true", help="with --push-to-hub: create the repository as private"
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def run(args: argparse.Namespace) -> int:
    """Convert; one error line on stderr and exit status 1 on a user error (``--debug`` shows the traceback)."""
    if args.private and not args.push_to_hub:
        print("refseg convert: error: --private needs --push-to-hub ORG/NAME", file=sys.stderr)
        return 1
    if args.push_to_hub:  # a malformed id fails now, not after the conversion
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id

        try:
            validate_repo_id(args.push_to_hub)
        except HFValidationError as err:
            print(f"refseg convert: error: --push-to-hub {args.push_to_hub!r}: {err}", file=sys.stderr)
            return 1
    try:
        model, notes = _convert(args)
    except (ValueError, OSError, ImportError) as err:  # OSError: a missing file, a full disk while writing
        if args.debug:
            traceback.print_exc()
        print(f"refseg convert: error: {one_line(err)}", file=sys.stderr)
        return 1
    count = sum(p.numel() for p in model.parameters())
    print(f"refseg convert: wrote {args.output} ({count:,} parameters)")
    for note in notes:
        print(f"refseg convert: {note}")
    if args.push_to_hub:
        return _push(args)
    return 0


def _convert(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """Run the model type's converter; the model and the lines to print after "wrote"."""
    from refseg.modeling.pretrained.converted_folder import parse_overrides

    overrides = parse_overrides(args.config_overrides)
    if args.model_type == "rela":
        from refseg.models.rela.convert_rela import convert_checkpoint as convert_rela

        model, report = convert_rela(
            args.checkpoint,
            args.output,
            tokenizer=args.tokenizer,
            config_overrides=overrides,
            preset=args.preset,
        )
        gates = {True: "closed (all zero)", False: "open (non-zero)", None: "none (R-50)"}
        notes = [
            f"{report.preset} preset, {report.converted} tensors converted, {len(report.recomputed)} recomputed "
            f"buffers checked, {len(report.filled)} model tensors the file cannot hold left at their initial "
            f"values; language gates: {gates[report.language_gates_closed]}"
        ]
        return model, notes
    from refseg.models.instancevg.convert_instancevg import convert_checkpoint

    model = convert_checkpoint(
        args.checkpoint, args.output, tokenizer=args.tokenizer, config_overrides=overrides, preset=args.preset
    )
    notes = []
    if args.tokenizer is None:
        notes.append("no --tokenizer given: add BEiT-3's beit3.spm to use the processor and pipeline")
    return model, notes


def _push(args: argparse.Namespace) -> int:
    """Upload the converted folder to ``args.push_to_hub`` (model card first); one error line on failure."""
    from pathlib import Path

    from refseg.hub import push_to_hub

    source = Path(args.checkpoint).name
    card = {
        "model_type": args.model_type,
        "description": f"{_CARD_NAMES[args.model_type]} converted for refseg from the released checkpoint "
        f"`{source}` (`refseg convert`, see docs/models/{args.model_type}.md).",
        "tags": ["converted"],
    }
    try:
        url = push_to_hub(
            args.output,
            args.push_to_hub,
            private=True if args.private else None,
            commit_message=f"Convert {source} with refseg",
            card_kwargs=card,
        )
    except Exception as err:  # network, authentication, permissions: the folder stays written
        if args.debug:
            traceback.print_exc()
        message = " ".join(str(err).split()) or type(err).__name__
        print(
            f"refseg convert: error: wrote {args.output}, but uploading it to {args.push_to_hub} failed: {message} "
            f"(log in with `hf auth login` or set HF_TOKEN, then run `hf upload {args.push_to_hub} {args.output}`)",
            file=sys.stderr,
        )
        return 1
    print(f"refseg convert: uploaded {args.output} to {args.push_to_hub} ({url})")
    return 0
