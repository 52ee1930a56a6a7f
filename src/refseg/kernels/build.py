"""Building and loading the compiled multi-scale deformable attention op.

refseg installs as pure Python; the C++ CPU op is compiled on first use (or by ``refseg kernels build``)
with the system C++ compiler into a private cache directory keyed by the torch version and a hash of the
sources and flags (``~/.cache/refseg/kernels/<key>/``, override with ``REFSEG_KERNELS_CACHE``). A build is
guarded by an OS file lock (``fcntl.flock``) taken with a timeout: the lock dies with a killed build, so a
crash can never leave anything that blocks later builds. Objects are compiled in a temporary directory and
the shared library is moved into place atomically.

Per-ISA kernel units are compiled with their own flags (baseline, AVX2+FMA, AVX-512) and the library
picks one at load time from the running CPU, so no ``-march=native`` binary is produced.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

CSRC = Path(__file__).parent / "csrc"
LIBRARY_NAME = "refseg_msda_cpu.so"
_REGISTRATION_UNIT = "ms_deform_attn.cpp"
_HEADERS = ("ms_deform_attn_cpu.h", "ms_deform_attn_cpu_kernel.h", "ms_deform_attn_checks.h")
_COMMON_FLAGS = ["-O3", "-std=c++17", "-fPIC", "-DNDEBUG", "-fno-math-errno", "-ffp-contract=fast"]
# Reassociation only in the kernel units, so the D-loop dot products in the backward vectorise.
_KERNEL_FLAGS = ["-fno-trapping-math", "-fno-signed-zeros", "-fassociative-math"]
_ISA_FLAGS = {
    "base": [],
    "avx2": ["-mavx2", "-mfma", "-mf16c"],
    "avx512": [
        "-mavx512f",
        "-mavx512vl",
        "-mavx512bw",
        "-mavx512dq",
        "-mfma",
        "-mf16c",
        "-mprefer-vector-width=512",
    ],
}
LOCK_TIMEOUT_S = float(os.environ.get("REFSEG_KERNELS_LOCK_TIMEOUT", "600"))


class KernelBuildError(RuntimeError):
    """The C++ extension could not be compiled or loaded; ``str(error)`` carries the reason."""


@dataclass
class BuildResult:
    library: Path
    built: bool  # False when an existing build was reused
    seconds: float


def _isas() -> list[str]:
    return ["base", "avx2", "avx512"] if platform.machine().lower() in ("x86_64", "amd64") else ["base"]


def compiler() -> str | None:
    """The C++ compiler: ``$CXX`` or the first of c++, g++, clang++ on PATH."""
    if os.environ.get("CXX"):
        return shutil.which(os.environ["CXX"]) or os.environ["CXX"]
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _torch_dirs() -> tuple[list[str], str]:
    from torch.utils.cpp_extension import include_paths, library_paths

    return include_paths(), library_paths()[0]


def _units() -> list[tuple[str, list[str]]]:
    units = [(_REGISTRATION_UNIT, ["-fopenmp"])]
    units += [(f"ms_deform_attn_cpu_{isa}.cpp", _KERNEL_FLAGS + _ISA_FLAGS[isa]) for isa in _isas()]
    return units


def build_key() -> str:
    """Hash of torch version, Python ABI, platform, flags and the C++ sources."""
    digest = hashlib.sha256()
    abi = str(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", ""))
    for part in (
        torch.__version__,
        sys.implementation.cache_tag,
        platform.machine(),
        abi,
        repr(_COMMON_FLAGS),
        repr(_units()),
    ):
        digest.update(part.encode())
    for name in sorted({u for u, _ in _units()} | set(_HEADERS)):
        digest.update((CSRC / name).read_bytes())
    return f"torch{torch.__version__.replace('+', '_')}-{digest.hexdigest()[:16]}"


def cache_root() -> Path:
    """Folder that holds the compiled kernels: ``$REFSEG_KERNELS_CACHE`` or ``~/.cache/refseg/kernels``."""
    if os.environ.get("REFSEG_KERNELS_CACHE"):
        return Path(os.environ["REFSEG_KERNELS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "refseg" / "kernels"


def build_dir() -> Path:
    """This build's folder in the cache (keyed by torch version and a hash of sources and flags)."""
    return cache_root() / build_key()


class _FileLock:
    """``fcntl.flock`` on a lock file, polled until ``timeout`` seconds (released by the OS if we die)."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path, self.timeout, self._fd = path, timeout, None

    def __enter__(self) -> _FileLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise KernelBuildError(
                        f"timed out after {self.timeout:.0f}s waiting for the build lock {self.path} "
                        "(another process is building; set REFSEG_KERNELS_LOCK_TIMEOUT to wait longer)"
                    ) from None
                time.sleep(0.2)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise KernelBuildError(f"compiler failed ({proc.returncode}): {' '.join(cmd[:3])} ...\n{tail}")


def _compile(target: Path, cxx: str) -> None:
    includes, libdir = _torch_dirs()
    abi = int(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", 1))
    common = [*_COMMON_FLAGS, f"-D_GLIBCXX_USE_CXX11_ABI={abi}", f"-I{CSRC}"]
    common += [f"-isystem{path}" for path in includes] + [f"-isystem{sysconfig.get_paths()['include']}"]
    with tempfile.TemporaryDirectory(prefix="build-", dir=target.parent) as tmp:
        tmpdir = Path(tmp)
        jobs = []
        for unit, flags in _units():
            obj = tmpdir / (Path(unit).stem + ".o")
            jobs.append((obj, [cxx, "-c", str(CSRC / unit), "-o", str(obj), *common, *flags]))
        workers = max(1, min(len(jobs), int(os.environ.get("MAX_JOBS", os.cpu_count() or 1))))
        with ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(_run, cmd, tmpdir) for _, cmd in jobs]:
                future.result()
        lib_tmp = tmpdir / LIBRARY_NAME
        link = [cxx, "-shared", "-fopenmp", "-o", str(lib_tmp), *[str(o) for o, _ in jobs]]
        link += [f"-L{libdir}", f"-Wl,-rpath,{libdir}", "-lc10", "-ltorch_cpu", "-ltorch"]
        _run(link, tmpdir)
        os.replace(lib_tmp, target)  # atomic: a half-written library is never visible


FAILED_MARKER = "build-failed.txt"


def build(force: bool = False, verbose: bool = True, retry_failed: bool = True) -> BuildResult:
    """Compile the CPU op if no build for this key exists (or ``force``); return the library path.

    A failed build leaves ``build-failed.txt`` with the reason; with ``retry_failed=False`` (lazy builds on
    first use) that reason is raised again at once instead of re-running the compiler in every process.
    ``refseg kernels build`` always retries.
    """
    start = time.monotonic()
    marker = build_dir() / FAILED_MARKER
    if not retry_failed and not force and marker.is_file() and not (build_dir() / LIBRARY_NAME).is_file():
        raise KernelBuildError(
            f"{marker.read_text().strip()} (from an earlier attempt; `refseg kernels build` retries)"
        )
    if platform.system() == "Windows":
        raise KernelBuildError("building the C++ op is supported on Linux and macOS only")
    target_dir = build_dir()
    target = target_dir / LIBRARY_NAME
    if target.is_file() and not force:
        return BuildResult(target, False, time.monotonic() - start)
    cxx = compiler()
    if cxx is None:
        raise KernelBuildError("no C++ compiler found (set CXX or install g++/clang++)")
    target_dir.mkdir(parents=True, exist_ok=True)
    with _FileLock(target_dir / "build.lock", LOCK_TIMEOUT_S):
        if target.is_file() and not force:  # built by another process while we waited
            return BuildResult(target, False, time.monotonic() - start)
        if verbose:
            print(
                f"refseg: building the multi-scale deformable attention C++ op in {target_dir} "
                "(one-time, ~60s)",
                file=sys.stderr,
                flush=True,
            )
        try:
            _compile(target, cxx)
        except KernelBuildError as error:
            marker.write_text(str(error))
            raise
        marker.unlink(missing_ok=True)
    return BuildResult(target, True, time.monotonic() - start)
