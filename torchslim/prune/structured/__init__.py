"""Structured pruning with physical removal (docs/ARCHITECTURE.md):

* ``plan``: the pruner (``structured``, ``structured_plan``, targets and
  allocations) over the dependency groups of ``torchslim.graph``;
* ``importance``: per-channel importance of a group;
* ``greedy``: NetAdapt-style measured allocation;
* ``blocks``: whole residual blocks out;
* ``config``: the ``prune.structured`` / ``prune.blocks`` stages.

``torchslim.prune.structured`` is the function (``plan.structured``), as it
always was; import the modules with ``from torchslim.prune.structured import
plan`` (``import torchslim.prune.structured.plan as p`` would look the
function up instead of the package)."""
from ...core.discover import export_submodules as _export

__all__ = _export(__name__, __path__, globals())
