"""Moved to ``torchslim.runtime.simplify`` (below both analysis and export);
this name stays for code written against torchslim.export."""
from ..runtime.simplify import *  # noqa: F401,F403
from ..runtime.simplify import __all__  # noqa: F401
