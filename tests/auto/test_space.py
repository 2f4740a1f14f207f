"""The search space as recipe stages: every family's trial is a valid recipe;
per-group structured pruning keeps exactly the channels asked; the bytes
proxy equals the real artifact when nothing is trained; the CLI's errors."""
import pytest
import torch

from torchslim.auto.configs import AutoConfig
from torchslim.auto.info import model_info
from torchslim.auto.proxies import bytes_estimate
from torchslim.auto.space import SearchSpace, knob_defaults, resolve, trial_stages
from torchslim.auto.stages import LayerwiseStructuredConfig, keep_count, layerwise_structured
from torchslim.auto.timing import LatencySpec
from torchslim.core.errors import ConfigError
from torchslim.recipe.schema import Recipe
from torchslim.train import TrainConfig
from torchslim.zoo import build_model

from .conftest import HOLDOUT

X = (torch.rand(1, 1, 28, 28),)


@pytest.fixture(scope="module")
def resnet_info():
    return model_info(build_model("resnet8", dataset="mnist").eval(), X)


@pytest.mark.parametrize("strategy", ["tpe", "greedy"])
def test_every_family_is_a_valid_recipe(strategy, resnet_info):
    space = SearchSpace(lowrank={"enabled": True}).for_goal(wants_latency=True, wants_bytes=True)
    knobs = resolve(space, resnet_info, strategy=strategy)
    names = {k.name for k in knobs}
    assert "blocks" in names and "distill" in names and "bits.fc" in names and "rank.fc" in names
    assert ("greedy.speedup" in names) == (strategy == "greedy")
    assert ("keep.layer1.0.conv1" in names) == (strategy != "greedy")
    low = {k.name: (k.low if k.kind != "categorical" else True) for k in knobs}
    for params in (knob_defaults(knobs), low):
        stages, distill = trial_stages(params, space, resnet_info, strategy=strategy, finetune=TrainConfig(),
                                       latency=LatencySpec())
        raw = {"model": "resnet8", "data": {"dataset": "mnist"}, "stages": stages}
        if distill:
            raw.update(teacher="baseline", baseline=0, distill=distill)
            raw["stages"] = [{"name": "dense", "kind": "train", "epochs": 0}, *stages]
        Recipe.from_dict(raw)  # validates every stage's fields
        kinds = [s["kind"] for s in stages]
        assert kinds[-1] == "codec.encode" and "quantize.kmeans" in kinds and "auto.agp" in kinds
    assert any(s["kind"] == "decompose.svd" for s in trial_stages(low, space, resnet_info, strategy=strategy,
                                                                  finetune=TrainConfig(), latency=LatencySpec())[0])


def test_space_errors_name_the_field(resnet_info):
    with pytest.raises(ConfigError, match="space.structured.groups: \\['conv9'\\]"):
        resolve(SearchSpace(structured={"enabled": True, "groups": ["conv9"]}), resnet_info, strategy="tpe")
    with pytest.raises(ConfigError, match="StructuredSpace.min_keep"):
        SearchSpace(structured={"min_keep": 0})
    with pytest.raises(ConfigError, match="QuantizeSpace.bits"):
        AutoConfig(space={"quantize": {"bits": [6, 2]}})


def test_per_group_structured_keeps_what_is_asked():
    model = build_model("resnet8", dataset="mnist").eval()
    keep = {"layer1.0.conv1": 0.5, "layer2.0.conv1": 0.25, "layer3.0.conv2": 0.75}
    cfg = LayerwiseStructuredConfig(keep=keep, round_to=8)
    pruned = layerwise_structured(model, X, cfg)
    groups = {g["name"]: g for g in pruned.torchslim_structured["groups"]}
    for name, g in groups.items():
        assert g["after"] == keep_count(g["before"], keep.get(name, 1.0), 8, g["kind"])
    assert pruned.layer1[0].conv1.out_channels == 8 and pruned.layer2[0].conv1.out_channels == 8
    assert pruned.layer3[0].conv2.out_channels == 48 and pruned(X[0]).shape == model(X[0]).shape
    with pytest.raises(Exception, match="not channel groups"):
        layerwise_structured(model, X, LayerwiseStructuredConfig(keep={"nope": 0.5}))


def test_bytes_proxy_equals_the_artifact_without_training(tmp_path, digits_model, digits_data):
    from torchslim.artifact import load
    from torchslim.recipe import run_recipe

    stages = [{"name": "cluster", "kind": "quantize.kmeans", "bits": 3, "layer_bits": {"fc1": 2}, "bias_bits": 4},
              {"name": "encode", "kind": "codec.encode", "huffman": True, "fp16": True}]
    report = run_recipe({"model": {"artifact": str(digits_model)}, "data": {"dataset": digits_data, "holdout": HOLDOUT},
                         "measure": {"latency": False}, "stages": stages}, tmp_path / "run", progress=False,
                        html=False)
    est = bytes_estimate(load(digits_model), stages, (torch.rand(1, 1, 8, 8),))
    assert est == report["final"]["size_bytes"]


def test_cli_errors_name_the_token(capsys, digits_model, digits_data, tmp_path):
    from torchslim.cli.auto import main

    code = main([str(digits_model), "--dataset", digits_data, "--out", str(tmp_path / "x"),
                 "--budget", "max_drop=0.5,speedup<=1.8"])
    assert code == 2 and "'speedup<=1.8'" in capsys.readouterr().err
    code = main([str(digits_model), "--dataset", digits_data, "--out", str(tmp_path / "x"), "space.nope=1"])
    assert code == 2 and "nope" in capsys.readouterr().err


def test_strategy_proposals(resnet_info):
    from torchslim.auto.amc import Episode
    from torchslim.auto.strategies import amc_proposals, greedy_proposals, uniform_seeds

    space = SearchSpace(greedy={"speedup": [1.5, 2.5]}).for_goal(wants_latency=True, wants_bytes=False)
    knobs = resolve(space, resnet_info, strategy="greedy")
    props = greedy_proposals(knobs, 5)
    assert [p["greedy.speedup"] for p in props] == [1.5, 1.75, 2.0, 2.25, 2.5]
    assert all(p["epochs"] == 3 and p["blocks"] == 0 for p in props)  # the rest at the knobs' defaults
    knobs = resolve(space, resnet_info, strategy="tpe")
    groups = [k.name[5:] for k in knobs if k.name.startswith("keep.")]
    eps = [Episode([0.5] * len(groups), 0.9, 0.5), Episode([0.501] * len(groups), 0.89, 0.5),
           Episode([0.2] * len(groups), 0.8, 0.7), Episode([0.9] * len(groups), 0.7, 0.3)]
    props = amc_proposals(knobs, eps, groups, 2, prefix="keep.", to_value=lambda a: 1 - a)
    assert [p[f"keep.{groups[0]}"] for p in props] == [0.5, 0.8]  # distinct episodes, best first
    assert uniform_seeds(knobs, [0.1])[0][f"keep.{groups[0]}"] == 0.25  # clipped to the range


def test_density_floors_walk_the_scan():
    from torchslim.auto.proxies import floors_from_scan

    scan = {"dense": 0.99, "sparsities": [0.5, 0.9, 0.99],
            "layers": {"a": {"values": [0.98, 0.70, 0.20]},    # crosses 0.49 between 0.9 and 0.99
                       "b": {"values": [0.40, 0.90, 0.95]},    # below at once (then recovers: ignored)
                       "c": {"values": [0.99, 0.99, 0.98]}}}   # never: the scan's sparsest point
    f = floors_from_scan(scan, 50.0)
    assert f["a"] == pytest.approx(1 - (0.9 + 0.09 * (0.70 - 0.49) / 0.50))
    assert f["b"] == pytest.approx(1 - 0.5 * (0.99 - 0.49) / (0.99 - 0.40))
    assert f["c"] == pytest.approx(0.01)
    space = SearchSpace(unstructured={"enabled": True, "densities": {"fc": [0.2, 0.5]}})
    info = {"groups": {}, "blocks": [], "layers": {"fc": {"type": "Linear", "params": 10},
                                                   "c1": {"type": "Conv2d", "params": 10}}}
    knobs = {k.name: k for k in resolve(space, info, strategy="tpe", density_floors={"c1": 0.3, "fc": 0.9})}
    assert knobs["density.c1"].low == 0.3 and knobs["density.fc"].low == 0.2  # given ranges are kept
