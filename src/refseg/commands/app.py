"""``refseg app``: start the Gradio web app (needs the ``app`` extra: ``pip install 'refseg[app]'``)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``refseg app``'s options (model, host, port, device) to ``parser``."""
    parser.add_argument(
        "--model", default=None, help="model folder or Hub id (default: the demo model bundled with refseg)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument(
        "--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if available)"
    )


def _require_gradio():
    try:
        import gradio
    except ImportError:
        raise SystemExit(
            "refseg app needs Gradio, which is not installed: pip install 'refseg[app]' (or 'gradio>=5')"
        ) from None
    return gradio


def run(args: argparse.Namespace) -> int:
    """Start the Gradio app and serve it until interrupted; returns the exit status."""
    import os

    if not 0 < args.port < 65536:
        raise SystemExit(f"--port must be between 1 and 65535, got {args.port}")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    _require_gradio()
    from ..app.blocks import build_app, launch_app

    app = build_app(model=args.model, device=args.device)
    print(f"refseg app: http://{args.host}:{args.port} (Ctrl+C to stop)")
    launch_app(app, args.host, args.port, block=True)
    return 0
