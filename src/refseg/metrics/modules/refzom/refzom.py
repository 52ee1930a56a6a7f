"""Ref-ZOM metrics as DMMI's evaluator: oIoU, mIoU, P@0.5..0.9, zero-target Acc.

Loadable offline with `evaluate.load(refseg.metrics.module_path("refzom"))`; the definition lives in
`refseg.metrics` (this script only exposes it to `evaluate.load`).
"""

from refseg.metrics.evaluate_modules import RefZOMMetric

__all__ = ["RefZOMMetric"]
