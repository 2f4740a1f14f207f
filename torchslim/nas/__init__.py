"""torchslim.nas: once-for-all neural architecture search under a measured
latency budget, for the zoo CNNs (``resnet8``, ``mobilenetv2``).

    >>> from torchslim.nas import search
    >>> res = search(model, train, holdout, speedup=1.6, latency_batch_sizes=(1, 32))
    >>> res.model            # the chosen subnet: a plain nn.Module (torchslim.save / ONNX export)

One concept per module:

* ``layers``: elastic Conv2d / BatchNorm2d / Linear, skippable blocks;
* ``plan`` / ``zoo_plans``: which layers share channels, which blocks may go;
* ``supernet``: ``ElasticSupernet`` (largest config == the source model),
  ``set_config`` / ``extract``; ``space``: the search space and its configs;
* ``sandwich``: supernet training (sandwich rule, in-place distillation);
* ``latency_table``: the per-layer latency proxy, calibrated and validated;
* ``scoring``: BatchNorm recalibration + holdout accuracy of a candidate;
* ``evolution`` / ``tpe``: the searches; ``candidates``: results, final
  measured check;
* ``configs``: ``NASConfig`` (recipe stage ``nas.search``); ``api``: ``search``.

Public names are re-exported from the submodules' ``__all__`` (add a method =
add a module)."""
from ..core.discover import export_submodules as _export

__all__ = _export(__name__, __path__, globals())
