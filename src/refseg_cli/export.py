"""``refseg export onnx``: write a refseg model as an ONNX graph (needs ``pip install 'refseg[onnx]'``)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``refseg export``'s options to ``parser``."""
    sub = parser.add_subparsers(dest="format", required=True)
    onnx_help = "export to ONNX (image + text in, the model's mask, no-target and instance logits out)"
    onnx = sub.add_parser(
        "onnx",
        help=onnx_help,
        description=onnx_help + "; onnxruntime then runs the file and it is compared with PyTorch",
    )
    onnx.add_argument(
        "--model", default=None, help="model folder or Hub id (default: the demo model bundled with refseg)"
    )
    onnx.add_argument("--output", required=True, help="ONNX file to write, e.g. model.onnx")
    onnx.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18; GridSample needs >= 16)")
    onnx.add_argument(
        "--static",
        action="store_true",
        help="fix batch and sentence length to the tracing inputs' (2 and theirs)",
    )
    onnx.add_argument(
        "--no-check",
        action="store_true",
        help="skip running the graph in onnxruntime and comparing it with PyTorch",
    )


def run(args: argparse.Namespace) -> int:
    """Export the model, check the exported graph against PyTorch unless told not to."""
    if args.opset < 16:
        raise SystemExit(f"--opset must be at least 16 (ONNX GridSample), got {args.opset}")
    missing = [name for name in ("onnx", "onnxscript") if not _importable(name)]
    if not args.no_check and not _importable("onnxruntime"):
        missing.append("onnxruntime")
    if missing:
        raise SystemExit(f"refseg export onnx needs {', '.join(missing)}: pip install 'refseg[onnx]'")
    import refseg
    from refseg.export import compare_with_onnxruntime, example_inputs, export_onnx, load_for_export

    from ._common import quiet_libraries

    path = args.model or refseg.demo_model_path()
    with quiet_libraries():
        try:
            model, processor = load_for_export(path)
        except (OSError, ValueError) as err:
            raise SystemExit(f"could not load the model {path!r}: {err}") from None
        inputs = example_inputs(model, processor)
        output = export_onnx(model, args.output, opset=args.opset, dynamic=not args.static, inputs=inputs)
    size_mb = output.stat().st_size / 2**20
    print(f"refseg export onnx: model {path} -> {output} ({size_mb:.1f} MB, opset {args.opset})")
    if not args.no_check:
        with quiet_libraries():
            diffs = compare_with_onnxruntime(model, output, inputs)
        worst = max(diffs.values())
        print(
            "max |onnxruntime - PyTorch| per output: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
        )
        if worst > 1e-3:
            print(f"warning: the ONNX graph differs from PyTorch by up to {worst:.2e}")
            return 1
    return 0


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
