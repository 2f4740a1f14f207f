"""torchslim.auto: automatic compression to the user's target.

``auto(model, dataset=..., budget="max_drop=0.5,speedup>=1.8,bytes<=12k",
objectives=("bytes", "accuracy"), out=DIR)`` searches compression recipes
(structured and unstructured pruning, k-means weight sharing, low rank,
distillation, fine-tune budget) with Optuna on a real database
(``DIR/study.db`` or PostgreSQL; several workers, resumable after a kill),
stops bad trials early, and returns the Pareto front of the trials within
the budget: every point an artifact on disk with its own report
(``DIR/front.json``, ``DIR/report.html``). CLI: ``torchslim auto``; recipe
stage: ``kind: auto.search``. Public names are re-exported from the
submodules' ``__all__``."""
from ..core.discover import export_submodules as _export

__all__ = _export(__name__, __path__, globals())
