#!/usr/bin/env bash
# Installs what the tests need (CPU torch first, so no CUDA build is pulled) and runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet "torch==2.13.0" 2>/dev/null || python -m pip install --quiet "torch>=2.6"
python -m pip install --quiet -e ".[test]"
ruff check src tests examples benchmarks
refseg kernels build || echo "compiled kernel unavailable: refseg falls back to the reference (see above)"
refseg kernels info
python -m pytest -q -p no:cacheprovider "$@"
