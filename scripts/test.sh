#!/usr/bin/env bash
# Installs what the tests need (CPU torch first, so no CUDA build is pulled) and runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet "torch==2.13.0" 2>/dev/null || python -m pip install --quiet "torch>=2.6"
python -m pip install --quiet -e ".[test,docs,app,onnx]"
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
