"""Judging a candidate subnet: extract it, re-estimate its BatchNorm
statistics (the supernet's are shared by every subnet it trained, so no
subnet's own), then measure accuracy on a holdout split of the training data.
The test split is never used to choose a subnet."""
from __future__ import annotations

from ..analysis.evaluate import evaluate
from ..core.errors import DataError
from ..prune.recalibrate import recalibrate_bn
from .supernet import ElasticSupernet

__all__ = ["SubnetScorer"]


class SubnetScorer:
    """``scorer(config) -> holdout accuracy`` of a supernet's subnet after
    BatchNorm recalibration on ``bn_batches`` batches of ``bn_data`` (training
    inputs; labels unused)."""

    def __init__(self, supernet: ElasticSupernet, holdout, bn_data, *, bn_batches: int = 20, bn_batch_size: int = 128,
                 batch_size: int = 1000):
        if holdout is None or len(holdout) == 0:
            raise DataError("nas: scoring subnets needs a holdout split of the training data (never the test "
                            "split); pass holdout data, or set data.holdout in a recipe")
        if bn_data is None:
            raise DataError("nas: BatchNorm recalibration needs training inputs (bn_data)")
        self.supernet, self.holdout, self.bn_data = supernet, holdout, bn_data
        self.bn_batches, self.bn_batch_size, self.batch_size = bn_batches, bn_batch_size, batch_size

    def subnet(self, config: dict):
        """The extracted subnet with recalibrated BatchNorm statistics."""
        m = self.supernet.extract(config)
        return recalibrate_bn(m, self.bn_data, batches=self.bn_batches, batch_size=self.bn_batch_size)

    def __call__(self, config: dict) -> float:
        return float(evaluate(self.subnet(config), self.holdout, batch_size=self.batch_size, topk=())["accuracy"])
