"""GREC (gRefCOCO boxes) metrics as the official evaluator: Pr@(F1=1, IoU>=0.5), N-acc, T-acc.

Loadable offline with `evaluate.load(refseg.metrics.module_path("grec"))`; the definition lives in
`refseg.metrics` (this script only exposes it to `evaluate.load`).
"""

from refseg.metrics.evaluate_modules import GRECMetric

__all__ = ["GRECMetric"]
