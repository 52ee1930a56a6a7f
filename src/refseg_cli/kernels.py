"""``refseg kernels build | info | check-cuda``: build and inspect the compiled deformable attention."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``refseg kernels``'s actions (build, info, check-cuda) to ``parser``."""
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="compile the C++ CPU op (and with --cuda the CUDA extension) and report")
    b.add_argument("--force", action="store_true", help="rebuild even if a build for this key exists")
    b.add_argument(
        "--cuda", action="store_true", help="also build the CUDA extension (needs CUDA torch + nvcc)"
    )
    sub.add_parser("info", help="which implementation runs per device and why, build directory, versions")
    c = sub.add_parser("check-cuda", help="compile-check the .cu with nvcc -c against the torch headers")
    c.add_argument(
        "--arch", default="7.5;9.0", help="TORCH_CUDA_ARCH_LIST-style list (nvcc 13: 7.5 and newer)"
    )


def _print(report: dict) -> None:
    print(json.dumps(report, indent=2))


def _build(args: argparse.Namespace) -> int:
    from refseg.kernels import build, ops

    start = time.monotonic()
    report: dict = {
        "torch": torch.__version__,
        "compiler": build.compiler(),
        "build_dir": str(build.build_dir()),
    }
    try:
        result = build.build(force=args.force)
    except build.KernelBuildError as error:
        report.update({"ok": False, "error": str(error)})
        _print(report)
        return 1
    report.update({"ok": True, "library": str(result.library), "rebuilt": result.built})
    report["cpu"] = ops.implementation("cpu")
    report["cpu_isa"] = ops.cpu_isa()
    if report["cpu"] != "compiled":
        report["ok"] = False
    if args.cuda:
        from refseg.kernels import cuda_build

        try:
            report["cuda_library"] = str(cuda_build.build(verbose=True))
        except Exception as error:  # noqa: BLE001
            report.update({"ok": False, "cuda_error": str(error)})
    report["seconds"] = round(time.monotonic() - start, 1)
    _print(report)
    return 0 if report["ok"] else 1


def _info(args: argparse.Namespace) -> int:
    from refseg.kernels import build, ops

    report = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "REFSEG_DISABLE_KERNELS": os.environ.get("REFSEG_DISABLE_KERNELS"),
        "compiler": build.compiler(),
        "cache_root": str(build.cache_root()),
        "build_dir": str(build.build_dir()),
        "cpu": ops.implementation("cpu"),
        "cpu_isa": ops.cpu_isa(),
        "cpu_threads": torch.get_num_threads(),
        "cuda": ops.implementation("cuda"),
        "library": ops.loaded_library(),
    }
    _print(report)
    return 0


def _check_cuda(args: argparse.Namespace) -> int:
    from refseg.kernels.build import KernelBuildError
    from refseg.kernels.cuda_build import compile_check

    try:
        _print({"ok": True, "result": compile_check(args.arch)})
        return 0
    except KernelBuildError as error:
        _print({"ok": False, "error": str(error)})
        return 1


def run(args: argparse.Namespace) -> int:
    """Run the chosen ``refseg kernels`` action; returns the exit status."""
    return {"build": _build, "info": _info, "check-cuda": _check_cuda}[args.action](args)
