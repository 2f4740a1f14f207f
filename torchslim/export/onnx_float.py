"""Moved to ``torchslim.runtime.onnx_float`` (below both analysis and export);
this name stays for code written against torchslim.export."""
from ..runtime.onnx_float import *  # noqa: F401,F403
from ..runtime.onnx_float import __all__  # noqa: F401
