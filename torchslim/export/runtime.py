"""Moved to ``torchslim.runtime.ort`` (below both analysis and export);
this name stays for code written against torchslim.export."""
from ..runtime.ort import *  # noqa: F401,F403
from ..runtime.ort import __all__  # noqa: F401
