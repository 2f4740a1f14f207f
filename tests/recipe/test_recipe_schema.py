import pytest

from . import recipe_test_stages  # noqa: F401  (registers test.* configs)
from torchslim.core import ConfigError
from torchslim.recipe import Recipe, load_recipe

BASE = {
    "model": "lenet300",
    "data": {"dataset": "digits", "holdout": 100},
    "baseline": "dense",
    "stages": [
        {"name": "dense", "kind": "train", "epochs": 2, "lr": 0.01},
        {"kind": "test.zero_small", "fraction": 0.5},
    ],
}


def test_valid_recipe_resolves_and_round_trips():
    r = load_recipe(BASE)
    assert [s.name for s in r.stages] == ["dense", "test.zero_small"]
    assert r.baseline == 0 and r.model.zoo == "lenet300" and r.data.holdout == 100
    assert r.stages[0].config.epochs == 2 and r.stages[0].config.batch_size == 128  # defaults filled
    again = Recipe.from_dict(r.to_dict())
    assert again == r
    assert again.to_dict() == r.to_dict()


def test_yaml_text_and_model_shorthands(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("model: {zoo: mlp, kwargs: {hidden: [32]}}\ndata: {dataset: digits}\nstages:\n  - {kind: train, lr: 1e-3}\n")
    r = load_recipe(p)
    assert r.name == "r" and r.model.kwargs == {"hidden": [32]} and r.stages[0].config.lr == 1e-3
    assert load_recipe({**BASE, "model": "pkg.mod:Net"}).model.import_path == "pkg.mod:Net"
    with pytest.raises(ConfigError, match="no such file"):
        load_recipe({**BASE, "model": str(tmp_path / "missing.safetensors")})


@pytest.mark.parametrize("change, pattern", [
    ({"stages": [{"kind": "train", "epochs": 1}, {"kind": "prune.bogus"}]},
     r"stages\[1\]: unknown kind 'prune.bogus'; use one of \[.*'train'"),
    ({"stages": [{"name": "dense", "kind": "train", "epoch": 3}]},
     r"stages\[0\] \('dense', kind 'train'\).*unknown field\(s\) \['epoch'\]; allowed fields are \[.*'epochs'"),
    ({"stages": [{"name": "dense", "kind": "train", "epochs": "three"}]},
     r"stages\[0\] \('dense', kind 'train'\).*epochs: expected an integer"),
    ({"stages": [{"name": "dense", "kind": "train"}, {"name": "z", "kind": "test.zero_small", "fraction": 1.5}]},
     r"stages\[1\] \('z', kind 'test.zero_small'\).*fraction must be in \[0, 1\)"),
    ({"stages": [{"name": "dense", "kind": "train", "optimizer": "lbfgs"}]},
     r"stages\[0\] \('dense'.*'lbfgs' is not allowed; use one of \['sgd', 'adam', 'adamw'\]"),
    ({"stages": [{"name": "a", "kind": "train"}, {"name": "a", "kind": "train"}]}, r"stages\[1\] \('a'\).*unique"),
    ({"stages": [{"epochs": 1}]}, r"stages\[0\]: 'kind' is missing"),
    ({"baseline": "nope"}, r"baseline: no stage named 'nope'; stages are \['dense', 'test.zero_small'\]"),
    ({"baseline": 7}, r"baseline: stage index 7 is out of range"),
    ({"modle": "lenet300"}, r"unknown key\(s\) \['modle'\]; allowed keys are"),
    ({"model": "resnet1000"}, r"no such file|unknown zoo model"),
    ({"model": {"zoo": "resnet1000"}}, r"model.zoo: unknown zoo model 'resnet1000'"),
    ({"data": {"dataset": "cifar"}}, r"data.dataset: unknown data set 'cifar'"),
    ({"data": {"dataset": "digits", "holdot": 3}}, r"data: unknown field\(s\) \['holdot'\]"),
    ({"measure": {"threads": 0}}, r"measure.threads must be positive"),
    ({"stages": []}, r"'stages' is missing or empty"),
    ({"teacher": "baseline", "baseline": None}, r"teacher: 'baseline' needs a trained baseline"),
    ({"distill": {"temperature": 2.0}}, r"distill: recipe-level distillation needs a teacher"),
])
def test_errors_name_stage_and_field(change, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_recipe({**BASE, **change})


def test_nested_finetune_field_error_names_stage():
    bad = {**BASE, "stages": [{"name": "ft", "kind": "test.finetune", "finetune": {"epochs": 1, "lrr": 0.1}}]}
    with pytest.raises(ConfigError, match=r"stages\[0\] \('ft', kind 'test.finetune'\).*unknown field\(s\) \['lrr'\]"):
        load_recipe(bad)


def test_default_names_are_unique_and_stage_lookup():
    r = load_recipe({**BASE, "baseline": None, "stages": [{"kind": "train"}, {"kind": "train"}, {"kind": "train"}]})
    assert [s.name for s in r.stages] == ["train", "train-2", "train-3"]
    assert r.stage("train-2").index == 1 and r.stage(-1).name == "train-3"
