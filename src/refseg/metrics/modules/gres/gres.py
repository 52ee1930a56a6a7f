"""GRES (gRefCOCO) metrics as ReLA's evaluator: gIoU, cIoU, N-acc, T-acc, Pr@0.7/0.8/0.9.

Loadable offline with `evaluate.load(refseg.metrics.module_path("gres"))`; the definition lives in
`refseg.metrics` (this script only exposes it to `evaluate.load`).
"""

from refseg.metrics.evaluate_modules import GRESMetric

__all__ = ["GRESMetric"]
