import pytest
import torch.nn as nn

from torchslim.core import ConfigError, Scope
from torchslim.zoo import build_model


def names(scope, model, supported=(nn.Linear, nn.Conv2d)):
    return [n for n, _ in scope.select(model, supported)]


def test_default_selects_all_supported():
    m = build_model("lenet5")
    assert names(Scope(), m) == ["conv1", "conv2", "fc1", "fc2"]


def test_include_and_exclude():
    m = build_model("lenet5")
    assert names(Scope(types=("Linear",)), m) == ["fc1", "fc2"]
    assert names(Scope(patterns=(r"conv\d",)), m) == ["conv1", "conv2"]
    assert names(Scope(exclude_names=("fc2",)), m) == ["conv1", "conv2", "fc1"]
    assert names(Scope(types=("Linear",), exclude_patterns=("fc1",)), m) == ["fc2"]
    assert names(Scope(names=("conv1",), types=("Linear",)), m) == ["conv1", "fc1", "fc2"]


def test_bad_pattern_and_unknown_name():
    with pytest.raises(ConfigError, match="regular expression"):
        Scope(patterns=("(",))
    with pytest.raises(ConfigError, match="no layer named 'fc9'"):
        Scope(names=("fc9",)).check_names(build_model("lenet300"))
