"""NASConfig ("nas.search"): registration, round trips, errors naming the field."""
from __future__ import annotations

import pytest

from torchslim.core.config import config_class
from torchslim.core.errors import ConfigError
from torchslim.nas import NASConfig
from torchslim.train import TrainConfig


def test_registered_as_recipe_stage():
    assert config_class("nas.search") is NASConfig


def test_round_trips():
    cfg = NASConfig(width_mults=[0.5, 1], kernel_sizes=[3, 5, 7], algorithm="tpe", trials=20, speedup=1.8,
                    latency_batch_sizes=[1, 32], finetune={"epochs": 2, "lr": 5e-4})
    assert cfg.width_mults == (0.5, 1.0) and isinstance(cfg.finetune, TrainConfig)
    assert NASConfig.from_dict(cfg.to_dict()) == cfg
    assert NASConfig.from_json(cfg.to_json()) == cfg
    assert NASConfig.from_yaml(cfg.to_yaml()) == cfg
    assert NASConfig.from_dict({}) == NASConfig()
    assert NASConfig(budget_ms=[0.2], speedup=None).changed() == {"budget_ms": [0.2], "speedup": None}
    per = NASConfig(speedup=[1.5, 2.0], latency_batch_sizes=[1, 32])
    assert per.speedups() == (1.5, 2.0) and NASConfig.from_yaml(per.to_yaml()) == per
    assert NASConfig(speedup=2, latency_batch_sizes=[1, 32]).speedups() == (2.0, 2.0)


@pytest.mark.parametrize("fields,match", [
    ({"width_mults": [0.0, 1.0]}, "NASConfig.width_mults"),
    ({"inner_mults": [1.5]}, "NASConfig.inner_mults"),
    ({"kernel_sizes": [2, 3]}, "NASConfig.kernel_sizes"),
    ({"speedup": 1.5, "budget_ms": [0.3]}, "exactly one latency budget"),
    ({"speedup": None}, "exactly one latency budget"),
    ({"speedup": None, "budget_ms": [0.3, 1.0]}, "NASConfig.budget_ms"),
    ({"latency_batch_sizes": [0]}, "NASConfig.latency_batch_sizes"),
    ({"speedup": [1.5, 2.0, 2.5], "latency_batch_sizes": [1, 32]}, "one per latency_batch_sizes"),
    ({"population": 4, "parents": 4}, "NASConfig.parents"),
    ({"population": 1}, "NASConfig.population"),
    ({"speedup": -1.0}, "NASConfig.speedup"),
    ({"speedup": None, "budget_ms": [-0.3]}, r"NASConfig.budget_ms\[0\]"),
    ({"width_mults": []}, "NASConfig.width_mults"),
    ({"validate_proxy": 1}, "NASConfig.validate_proxy"),
    ({"proxy_margin": 2.0}, "NASConfig.proxy_margin"),
    ({"holdout": 0}, "NASConfig.holdout"),
    ({"algorithm": "random"}, "NASConfig.algorithm"),
    ({"round_to": 0}, "NASConfig.round_to"),
    ({"trials": "many"}, "NASConfig.trials"),
])
def test_errors_name_the_field(fields, match):
    with pytest.raises(ConfigError, match=match):
        NASConfig(**fields)


def test_unknown_field_lists_the_allowed():
    with pytest.raises(ConfigError, match="unknown field.*'speedup'"):
        NASConfig.from_dict({"speed": 2})
