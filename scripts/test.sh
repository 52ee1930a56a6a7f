#!/usr/bin/env bash
# Installs what the tests need (CPU torch first, so no CUDA build is pulled) and runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet "torch==2.13.0" 2>/dev/null || python -m pip install --quiet "torch>=2.6"
python -m pip install --quiet -e ".[test,app,onnx]"
# headless Chromium + chromedriver for tests/app/test_app_browser.py (which skips, saying why, without them)
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
      >/dev/null 2>&1 || echo "could not install chromium with apt-get: the browser test will skip"
  fi
fi
ruff check src tests examples benchmarks
refseg kernels build || echo "compiled kernel unavailable: refseg falls back to the reference (see above)"
refseg kernels info
python -m pytest -q -p no:cacheprovider "$@"
