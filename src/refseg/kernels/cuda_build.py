"""The optional CUDA extension (``csrc/ms_deform_attn_cuda.cu``): build, load and compile-check.

It only adds ``TORCH_LIBRARY_IMPL(refseg, CUDA, ...)`` kernels to the ops defined by the CPU library, so it
is loaded after it. Building needs a CUDA build of torch, nvcc and ninja; it is never started implicitly
(minutes of nvcc): run ``refseg kernels build --cuda`` (or set ``REFSEG_BUILD_CUDA=1``). Without a visible
GPU set ``FORCE_CUDA=1`` and ``TORCH_CUDA_ARCH_LIST`` (nvcc 13 accepts compute_75 and newer only, e.g.
``"7.5;8.0;8.6;8.9;9.0;10.0;12.0+PTX"``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import torch

from .build import CSRC, LOCK_TIMEOUT_S, KernelBuildError, _FileLock, cache_root

SOURCE = CSRC / "ms_deform_attn_cuda.cu"
NAME = "refseg_msda_cuda"
_CUDA_FLAGS = ["-O3", "-std=c++17", "-diag-suppress=3306"]


def build_dir() -> Path:
    """The CUDA build's folder (keyed by torch, CUDA, the arch list and the sources)."""
    digest = hashlib.sha256(
        (torch.__version__ + str(torch.version.cuda) + os.environ.get("TORCH_CUDA_ARCH_LIST", "")).encode()
    )
    for name in ("ms_deform_attn_cuda.cu", "ms_deform_attn_checks.h", "ms_deform_attn_cpu.h"):
        digest.update((CSRC / name).read_bytes())
    return cache_root() / f"cuda-torch{torch.__version__.replace('+', '_')}-{digest.hexdigest()[:16]}"


def library_path() -> Path:
    """Path of the compiled CUDA library in :func:`build_dir`."""
    return build_dir() / f"{NAME}.so"


def build(verbose: bool = False) -> Path:
    """Compile the CUDA extension with ``torch.utils.cpp_extension.load`` into a private directory."""
    if torch.version.cuda is None:
        raise KernelBuildError(
            f"torch {torch.__version__} is a CPU-only build; install a CUDA build of torch"
        )
    if not torch.cuda.is_available() and not os.environ.get("FORCE_CUDA"):
        raise KernelBuildError(
            "no CUDA device visible; set FORCE_CUDA=1 and TORCH_CUDA_ARCH_LIST to build anyway"
        )
    if not torch.cuda.is_available() and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        raise KernelBuildError(
            "without a visible GPU, TORCH_CUDA_ARCH_LIST must be set (e.g. '7.5;8.0;9.0+PTX')"
        )
    from torch.utils.cpp_extension import load

    target = build_dir()
    target.mkdir(parents=True, exist_ok=True)
    with _FileLock(target / "refseg-build.lock", LOCK_TIMEOUT_S):
        # torch's own baton file can survive a killed build; we hold the exclusive lock, so it is stale
        (target / "lock").unlink(missing_ok=True)
        load(
            name=NAME,
            sources=[str(SOURCE)],
            extra_include_paths=[str(CSRC)],
            extra_cuda_cflags=_CUDA_FLAGS,
            build_directory=str(target),
            is_python_module=False,
            verbose=verbose,
        )
    return library_path()


def load() -> str:
    """Load the CUDA kernels if possible; returns "ok" or the reason they are unavailable."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} has no CUDA support"
    if not torch.cuda.is_available():
        return "no CUDA device available"
    path = library_path()
    if not path.is_file():
        if os.environ.get("REFSEG_BUILD_CUDA", "") not in ("", "0"):
            path = build()
        else:
            return "the CUDA extension is not built (run `refseg kernels build --cuda`)"
    torch.ops.load_library(str(path))
    return "ok"


def compile_check(arch_list: str = "7.5;9.0", nvcc: str | None = None) -> str:
    """``nvcc -c`` the .cu against the installed torch headers (works with a CPU-only torch wheel).

    CPU wheels lack the generated ``c10/cuda/impl/cuda_cmake_macros.h``; a one-line shim is supplied.
    Returns nvcc's output; raises KernelBuildError on failure.
    """
    nvcc = (
        nvcc
        or shutil.which("nvcc")
        or (os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc") if os.environ.get("CUDA_HOME") else None)
    )
    if not nvcc or not os.path.exists(nvcc):
        raise KernelBuildError("nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    from torch.utils.cpp_extension import include_paths

    with tempfile.TemporaryDirectory(prefix="refseg-nvcc-") as tmp:
        shim = Path(tmp) / "shim" / "c10" / "cuda" / "impl"
        shim.mkdir(parents=True)
        (shim / "cuda_cmake_macros.h").write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
        cmd = [nvcc, "-c", str(SOURCE), "-o", str(Path(tmp) / "msda.o"), *_CUDA_FLAGS, "-Xcompiler", "-fPIC"]
        cmd += [f"-D_GLIBCXX_USE_CXX11_ABI={int(getattr(torch._C, '_GLIBCXX_USE_CXX11_ABI', 1))}"]
        cmd += [f"-I{p}" for p in include_paths()] + [f"-I{Path(tmp) / 'shim'}", f"-I{CSRC}"]
        cmd += [f"-I{sysconfig.get_paths()['include']}"]
        for arch in arch_list.replace(",", ";").split(";"):
            num = arch.strip().replace(".", "").replace("+PTX", "")
            if num:
                cmd += ["-gencode", f"arch=compute_{num},code=sm_{num}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
            raise KernelBuildError(f"nvcc failed ({proc.returncode}):\n{tail}")
        return f"nvcc -c ok for {arch_list} ({(Path(tmp) / 'msda.o').stat().st_size} bytes)"


if __name__ == "__main__":  # pragma: no cover
    print(compile_check(*(sys.argv[1:2] or [])))
