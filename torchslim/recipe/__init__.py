"""torchslim.recipe: see docs/ARCHITECTURE.md. Public names are re-exported from the
submodules' `__all__` (add a method = add a module)."""
from ..core.discover import export_submodules as _export

__all__ = _export(__name__, __path__, globals())
