"""REC Precision@0.5 of the top-scoring box.

Loadable offline with `evaluate.load(refseg.metrics.module_path("rec"))`; the definition lives in
`refseg.metrics` (this script only exposes it to `evaluate.load`).
"""

from refseg.metrics.evaluate_modules import RECMetric

__all__ = ["RECMetric"]
