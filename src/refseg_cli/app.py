"""``refseg app``: start the Gradio web app (needs the ``app`` extra: ``pip install 'refseg[app]'``)."""

from __future__ import annotations

import argparse

from refseg.app.limits import AppLimits

_DEFAULTS = AppLimits()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``refseg app``'s options (models, host, port, device, limits) to ``parser``."""
    parser.add_argument(
        "--model",
        "--models",
        dest="models",
        nargs="+",
        action="extend",
        default=None,
        metavar="MODEL",
        help="the models the app offers, the first being the default: model folders, Hub ids, or 'demo' "
        "for the bundled demo model (default: demo). Nothing else can be loaded from the page",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument(
        "--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if available)"
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-upload-mb",
        type=float,
        default=_DEFAULTS.max_upload_mb,
        help=f"largest image upload in MB (default {_DEFAULTS.max_upload_mb:g})",
    )
    limits.add_argument(
        "--max-sentence-chars",
        type=int,
        default=_DEFAULTS.max_sentence_chars,
        help=f"longest sentence in characters (default {_DEFAULTS.max_sentence_chars})",
    )
    limits.add_argument(
        "--max-sentence-words",
        type=int,
        default=_DEFAULTS.max_sentence_words,
        help=f"longest sentence in words (default {_DEFAULTS.max_sentence_words})",
    )
    limits.add_argument(
        "--caption-chars",
        type=int,
        default=_DEFAULTS.caption_chars,
        help=f"the overlay's caption shows at most this many characters of the sentence "
        f"(default {_DEFAULTS.caption_chars})",
    )
    limits.add_argument(
        "--queue-size",
        type=int,
        default=_DEFAULTS.queue_size,
        help=f"requests that may wait; more are refused with 'queue is full' (default {_DEFAULTS.queue_size})",
    )


def _require_gradio():
    try:
        import gradio
    except ImportError:
        raise SystemExit(
            "refseg app needs Gradio, which is not installed: pip install 'refseg[app]' (or 'gradio>=5')"
        ) from None
    return gradio


def limits_from_args(args: argparse.Namespace) -> AppLimits:
    """The app's limits from the command line; SystemExit naming the flag for a non-positive value."""
    values = {
        "max_upload_mb": args.max_upload_mb,
        "max_sentence_chars": args.max_sentence_chars,
        "max_sentence_words": args.max_sentence_words,
        "caption_chars": args.caption_chars,
        "queue_size": args.queue_size,
    }
    try:
        return AppLimits(**values)
    except ValueError as err:
        name = str(err).split(" ", 1)[0]
        flag = "--" + name.replace("_", "-")
        raise SystemExit(f"{flag} {str(err).split(' ', 1)[1]}") from None


def run(args: argparse.Namespace) -> int:
    """Start the Gradio app and serve it until interrupted; returns the exit status."""
    import os

    from refseg.app.models import model_choices

    if not 0 < args.port < 65536:
        raise SystemExit(f"--port must be between 1 and 65535, got {args.port}")
    limits = limits_from_args(args)
    try:
        model_choices(args.models)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    _require_gradio()
    from refseg.app.blocks import build_app, launch_app

    app = build_app(models=args.models, device=args.device, limits=limits)
    print(f"refseg app: http://{args.host}:{args.port} (Ctrl+C to stop)", flush=True)
    launch_app(app, args.host, args.port, block=True)
    return 0
