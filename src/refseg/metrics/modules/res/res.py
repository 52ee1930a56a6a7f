"""RES (RefCOCO) metrics as LAVT's evaluator: mIoU, oIoU, P@0.5..0.9.

Loadable offline with `evaluate.load(refseg.metrics.module_path("res"))`; the definition lives in
`refseg.metrics` (this script only exposes it to `evaluate.load`).
"""

from refseg.metrics.evaluate_modules import RESMetric

__all__ = ["RESMetric"]
