"""Constraint parsing (errors name the bad token), violations, objectives."""
import pytest

from torchslim.auto.budget import Budget, Constraint, parse_budget
from torchslim.auto.configs import AutoConfig
from torchslim.auto.objectives import objective_values, parse_objectives
from torchslim.core.errors import ConfigError


def test_parse_all_forms():
    b = parse_budget("max_drop=0.5, speedup>=1.8,bytes<=12k,latency<=2.5,speedup@32>=2,accuracy>=99.1,latency@32<=10")
    got = {c.label: (c.metric, c.bound, c.batch) for c in b.constraints}
    assert got == {"max_drop": ("drop", 0.5, None), "speedup": ("speedup", 1.8, None),
                   "bytes": ("bytes", 12000.0, None), "latency": ("latency", 2.5, None),
                   "speedup@32": ("speedup", 2.0, 32), "accuracy": ("accuracy", 99.1, None),
                   "latency@32": ("latency", 10.0, 32)}
    assert parse_budget(b.text) == b  # the canonical text reads back equal
    assert parse_budget("bytes<=1.5M").constraints[0].bound == 1.5e6
    assert parse_budget("bytes<=9893").text == "bytes<=9893"
    assert parse_budget("") == Budget() and parse_budget(None) == Budget()
    assert parse_budget("max_drop<=0.2").constraints[0].bound == 0.2


@pytest.mark.parametrize("text, token, what", [
    ("max_drop=0.5,speedp>=1.8", "speedp>=1.8", "unknown constraint 'speedp'"),
    ("speedup<=1.8", "speedup<=1.8", "lower bound; write speedup>=1.8"),
    ("bytes>=10", "bytes>=10", "upper bound; write bytes<=10"),
    ("max_drop>=1", "max_drop>=1", "upper bound; write max_drop=1"),
    ("bytes<=ten", "bytes<=ten", "'ten' is not a number"),
    ("latency<=2ms", "latency<=2ms", "'2ms' is not a number"),
    ("speedup@x>=2", "speedup@x>=2", "batch 'x' is not a positive integer"),
    ("bytes@32<=5", "bytes@32<=5", "only speedup and latency take @BATCH"),
    ("speedup>=1.5,speedup>=2", "speedup>=2", "repeats 'speedup>=1.5'"),
    ("max_drop=-1", "max_drop=-1", ">= 0 accuracy points"),
    ("accuracy>=120", "accuracy>=120", "percent"),
    ("speedup>=0", "speedup>=0", "must be positive"),
    ("speedup", "speedup", "not NAME<=VALUE"),
    ("drop<=1", "drop<=1", "write max_drop=X"),
    ("speedup>=", "speedup>=", "the value is missing"),
])
def test_errors_name_the_token(text, token, what):
    with pytest.raises(ConfigError) as e:
        parse_budget(text)
    assert repr(token) in str(e.value) and what in str(e.value), str(e.value)


def test_empty_token():
    with pytest.raises(ConfigError, match="empty constraint between commas"):
        parse_budget("max_drop=1,,bytes<=5")


def test_violations():
    m = {"holdout_accuracy": 0.99, "drop_points": 0.4, "size_bytes": 11000, "speedup": {"1": 1.9, "32": 1.7},
         "latency_ms": {"1": 0.5, "32": 8.0}}
    b = parse_budget("max_drop=0.5,speedup>=1.8,bytes<=10k,latency<=1,speedup@1>=1.8,latency@32<=4,accuracy>=99.5")
    v = b.violations(m)
    assert v["max_drop"] == pytest.approx(-0.1)
    assert v["speedup"] == pytest.approx((1.8 - 1.7) / 1.8)  # the slowest batch size decides
    assert v["speedup@1"] == pytest.approx((1.8 - 1.9) / 1.8)
    assert v["bytes"] == pytest.approx(0.1)
    assert v["latency"] == pytest.approx((0.5 - 1) / 1)  # the first measured batch size
    assert v["latency@32"] == pytest.approx(1.0)
    assert v["accuracy"] == pytest.approx(0.5)
    assert not b.feasible(m)
    assert parse_budget("max_drop=0.5").feasible(m)
    assert parse_budget("speedup>=1").violations({})["speedup"] > 1e6  # missing measurement: infeasible


def test_objectives_and_config_errors():
    assert parse_objectives("bytes,accuracy") == ("bytes", "accuracy")
    with pytest.raises(ConfigError, match="unknown objective 'size'"):
        parse_objectives("size,accuracy")
    with pytest.raises(ConfigError, match="'bytes' is given twice"):
        parse_objectives(["bytes", "bytes"])
    m = {"holdout_accuracy": 0.98, "size_bytes": 1234, "speedup": {"1": 2.0, "32": 1.6}}
    assert objective_values(["accuracy", "bytes", "latency"], m) == pytest.approx([98.0, 1234.0, 1 / 1.6])
    with pytest.raises(ConfigError, match="AutoConfig.budget: 'speedup<=2'"):
        AutoConfig(budget="speedup<=2")
    with pytest.raises(ConfigError, match="accuracy alone"):
        AutoConfig(objectives=("accuracy",))
    assert AutoConfig(objectives=("accuracy",), budget="bytes<=5k").wants_bytes
    cfg = AutoConfig(objectives="latency,accuracy", budget="speedup@16>=1.5")
    assert cfg.objectives == ("latency", "accuracy") and cfg.latency_spec().batch_sizes == (1, 32, 16)
    assert AutoConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="pick"):
        AutoConfig(pick="latency")
    with pytest.raises(ConfigError, match="unknown field"):
        AutoConfig.from_dict({"trials": 3})
    assert Constraint(metric="bytes", bound=5).text == "bytes<=5"
