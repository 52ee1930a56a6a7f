"""R-RefCOCO metrics as RefSegformer's evaluator: mIoU, oIoU, mRR, rIoU.

Loadable offline with `evaluate.load(refseg.metrics.module_path("rrefcoco"))`; the definition lives in
`refseg.metrics` (this script only exposes it to `evaluate.load`).
"""

from refseg.metrics.evaluate_modules import RRefCOCOMetric

__all__ = ["RRefCOCOMetric"]
