import pytest

from torchslim.core import ConfigError
from torchslim.recipe import apply_overrides, load_recipe, parse_overrides

RAW = {
    "model": "lenet300",
    "data": {"dataset": "digits"},
    "stages": [{"name": "dense", "kind": "train", "epochs": 2}, {"name": "ft", "kind": "train"}],
}


def test_parse_values_as_yaml():
    assert parse_overrides(["a.b=1", "c=0.5", "d=true", "e=[1, 2]", "f=adam", "g=null", "h=1e-3"]) == [
        ("a.b", 1), ("c", 0.5), ("d", True), ("e", [1, 2]), ("f", "adam"), ("g", None), ("h", 1e-3)]
    with pytest.raises(ConfigError, match="is not key=value"):
        parse_overrides(["stages.1.epochs"])
    with pytest.raises(ConfigError, match="not a dotted path"):
        parse_overrides(["stages..epochs=1"])


def test_by_index_by_name_and_nested():
    out = apply_overrides(RAW, ["stages.1.epochs=5", "stages.dense.lr=0.01", "data.holdout=50", "stages.-1.seed=3"])
    assert out["stages"][1]["epochs"] == 5 and out["stages"][1]["seed"] == 3
    assert out["stages"][0]["lr"] == 0.01 and out["data"]["holdout"] == 50
    assert RAW["stages"][1] == {"name": "ft", "kind": "train"}  # the input is not modified
    r = load_recipe(RAW, ["stages.ft.epochs=4", "measure.repeats=3", "model.kwargs.hidden=[20, 10]"])
    assert r.stage("ft").config.epochs == 4 and r.measure.repeats == 3
    assert r.model.zoo == "lenet300" and r.model.kwargs == {"hidden": [20, 10]}
    assert load_recipe(RAW, {"stages.0.epochs": 7}).stages[0].config.epochs == 7


def test_errors():
    with pytest.raises(ConfigError, match=r"stage index 5 is out of range; the recipe has 2 stages \['dense', 'ft'\]"):
        apply_overrides(RAW, ["stages.5.epochs=1"])
    with pytest.raises(ConfigError, match=r"no stage is named 'prune'; stages are \['dense', 'ft'\]"):
        apply_overrides(RAW, ["stages.prune.sparsity=0.9"])
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['sparsity'\]"):
        load_recipe(RAW, ["stages.1.sparsity=0.9"])  # validation runs after the overrides
    with pytest.raises(ConfigError, match="epochs: expected an integer"):
        load_recipe(RAW, ["stages.1.epochs=many"])
    with pytest.raises(ConfigError, match="not a mapping"):
        apply_overrides(RAW, ["data.dataset.x=1"])
