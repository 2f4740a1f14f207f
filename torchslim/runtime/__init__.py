"""torchslim.runtime: the deployment runtime at its plainest, below both the
measuring layer (``analysis``: latency on ONNX Runtime) and the exporters
(``export``: int8 QDQ, dynamic int8, fusions): a float ONNX export of a
module and ONNX Runtime sessions that behave like a model. Public names are
re-exported from the submodules' ``__all__``."""
from ..core.discover import export_submodules as _export

__all__ = _export(__name__, __path__, globals())
