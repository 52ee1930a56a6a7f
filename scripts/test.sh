#!/usr/bin/env bash
# Installs what the tests need and runs them. A torch that is already installed is kept (CPU or CUDA build);
# without one, the CPU build is taken from PyTorch's CPU wheel index (TORCH_INDEX_URL overrides it), so pip
# does not pull a CUDA build with several GB of nvidia-* packages from the default index.
set -euo pipefail
cd "$(dirname "$0")/.."
if python -c "import torch" >/dev/null 2>&1; then
  echo "using the installed torch $(python -c 'import torch; print(torch.__version__)')"
else
  python -m pip install --quiet --timeout 30 --retries 1 "torch==2.13.0" \
    --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" \
    || python -m pip install --quiet "torch==2.13.0" \
    || python -m pip install --quiet "torch>=2.6"
fi
python -m pip install --quiet -e ".[test,docs,app,onnx]"
python - <<'PY'
import importlib.metadata as m

print("testing with " + ", ".join(f"{p} {m.version(p)}" for p in ("torch", "transformers", "accelerate", "datasets")))
PY
# headless Chromium + chromedriver for tests/app/test_app_browser.py (which skips, saying why, without them)
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
      >/dev/null 2>&1 || echo "could not install chromium with apt-get: the browser test will skip"
  fi
fi
ruff check src tests examples benchmarks scripts
ruff format --check src tests examples benchmarks scripts
# The compiled kernel must build wherever a C++ compiler exists: a failed build fails CI. Without a
# compiler refseg runs on the pure-PyTorch reference and the kernel tests skip with that reason.
if [ -n "${CXX:-}" ] || command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || command -v clang++ >/dev/null 2>&1; then
  refseg kernels build
else
  echo "no C++ compiler on this machine: refseg falls back to the reference kernel"
fi
refseg kernels info
# The docs site: a broken link, a stale API page or a bad docstring reference fails the build.
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
python -m pytest -q -p no:cacheprovider "$@"
