import dataclasses
from typing import Literal

import pytest

from torchslim.core import Config, ConfigError, Scope, apply, config_class, register_config, register_handler, registered_configs
from torchslim.train import TrainConfig


@register_config("test.example")
@dataclasses.dataclass(frozen=True)
class ExampleConfig(Config):
    ratio: float = 0.5
    mode: Literal["a", "b"] = "a"
    layers: tuple[str, ...] = ()
    scope: Scope = Scope()
    finetune: TrainConfig | None = None

    def validate(self):
        if not 0 <= self.ratio <= 1:
            raise ConfigError(f"ExampleConfig.ratio must be in [0, 1], got {self.ratio}")


def test_round_trip_dict_json_yaml():
    c = ExampleConfig(ratio=1, mode="b", layers=["fc1"], scope={"types": ["Linear"]}, finetune={"epochs": 2})
    assert c.ratio == 1.0 and isinstance(c.ratio, float)
    assert c.layers == ("fc1",) and isinstance(c.scope, Scope) and c.finetune.epochs == 2
    assert ExampleConfig.from_dict(c.to_dict()) == c
    assert ExampleConfig.from_json(c.to_json()) == c
    assert ExampleConfig.from_yaml(c.to_yaml()) == c


def test_every_registered_config_round_trips():
    for name, cls in registered_configs().items():
        c = cls()  # every config has usable defaults
        assert cls.from_dict(c.to_dict()) == c, name
        assert cls.from_yaml(c.to_yaml()) == c, name


@pytest.mark.parametrize("data, words", [
    ({"ratioo": 0.3}, ["ratioo", "allowed"]),
    ({"ratio": "x"}, ["ratio", "number"]),
    ({"ratio": 2.0}, ["ratio", "[0, 1]"]),
    ({"mode": "c"}, ["mode", "'a'", "'b'"]),
    ({"scope": {"typo": 1}}, ["typo", "allowed"]),
    ({"ratio": True}, ["ratio"]),
])
def test_bad_values_name_the_field(data, words):
    with pytest.raises(ConfigError) as e:
        ExampleConfig.from_dict(data)
    for w in words:
        assert w in str(e.value)


def test_registry_and_apply():
    assert config_class("test.example") is ExampleConfig
    with pytest.raises(ConfigError, match="unknown config"):
        config_class("nope.nothing")

    @register_handler(ExampleConfig)
    def _handler(model, cfg, ctx):
        return ("handled", cfg.ratio)

    assert apply(None, ExampleConfig(ratio=0.25)) == ("handled", 0.25)


def test_train_config_validation():
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig(lr=-1)
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig.from_dict({"optimizer": "rmsprop"})


def test_changed_lists_only_non_defaults_and_is_stable():
    from torchslim.train import TrainConfig

    assert TrainConfig().changed() == {}
    assert TrainConfig(epochs=3, lr=0.01).changed() == {"epochs": 3, "lr": 0.01}
    assert TrainConfig(epochs=3) == TrainConfig.from_dict(TrainConfig(epochs=3).to_dict())
    assert TrainConfig(epochs=3).changed() != TrainConfig(epochs=4).changed()


def test_declared_ranges_are_checked_for_every_way_a_config_is_made():
    import dataclasses

    from torchslim.core.config import Config, bounded

    @dataclasses.dataclass(frozen=True)
    class Ranged(Config):
        ratio: float = bounded(0.5, ge=0.0, lt=1.0)
        sizes: tuple[int, ...] = bounded((1,), ge=1)
        cap: int | None = bounded(None, gt=0)

    assert Ranged(ratio=0.0, sizes=(1, 8), cap=None).ratio == 0.0
    for bad, words in [(dict(ratio=1.0), "Ranged.ratio must be >= 0.0 and < 1.0, got 1.0"),
                       (dict(ratio=-0.1), "Ranged.ratio"), (dict(sizes=(4, 0)), r"Ranged.sizes\[1\] must be >= 1"),
                       (dict(cap=0), "Ranged.cap must be > 0")]:
        with pytest.raises(ConfigError, match=words):
            Ranged(**bad)
        with pytest.raises(ConfigError, match=words):
            Ranged.from_dict(bad)
    with pytest.raises(TypeError, match="unknown bound"):
        bounded(1, between=2)
