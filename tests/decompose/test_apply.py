"""decompose(): layer selection, skipping, configs, artifact round trip, fine-tuning, CLI."""

import pytest
import torch
import torch.nn as nn

import torchslim
from torchslim.core.config import apply, apply_stage, config_class
from torchslim.core.context import Context
from torchslim.core.errors import ConfigError
from torchslim.core.scope import Scope
from torchslim.decompose import CPConfig, SeparableConfig, SVDConfig, TuckerConfig, decompose
from torchslim.distill import DistillConfig
from torchslim.train import TrainConfig, fit
from torchslim.zoo import build_model


@pytest.mark.parametrize("cls", [SVDConfig, TuckerConfig, CPConfig, SeparableConfig])
def test_configs_round_trip(cls):
    cfg = cls(scope=Scope(names=("a",)), finetune=TrainConfig(epochs=2), distill=DistillConfig(alpha=0.5))
    assert cls.from_dict(cfg.to_dict()) == cfg
    assert cls.from_yaml(cfg.to_yaml()) == cfg
    assert config_class(cls.name) is cls
    with pytest.raises(ConfigError, match="allowed"):
        cls.from_dict({"kep": 0.3})


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="keep"):
        SVDConfig(keep=1.5)
    with pytest.raises(ConfigError, match="energy"):
        CPConfig(rank_by="energy")


def test_svd_keep_reduces_the_selected_layers():
    m = build_model("lenet300")
    ctx = Context()
    res = apply_stage(m, SVDConfig(scope=Scope(names=("fc1", "fc2")), keep=0.25), ctx)
    recs = {r["layer"]: r for r in res.records["decompose"]}
    assert set(recs) == {"fc1", "fc2"}
    assert isinstance(m.fc1, nn.Sequential) and isinstance(m.fc3, nn.Linear)
    before = sum(r["params_before"] for r in recs.values())
    after = sum(r["params_after"] for r in recs.values())
    assert after <= 0.25 * before + 2 * 400  # bias + rounding


def test_layer_is_skipped_when_macs_would_not_drop():
    m = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    recs = {r["layer"]: r for r in decompose(m, SVDConfig(keep=1.0))}
    # 8x8 at rank 4 costs 4 * (8 + 8) = 64 MACs, as many as the layer itself
    assert recs["0"]["status"] == "skipped: would not reduce MACs" and recs["0"]["macs_after"] == 64
    assert isinstance(m[0], nn.Linear)
    assert recs["2"]["status"] == "decomposed" and isinstance(m[2], nn.Sequential)


def test_energy_rank_full_energy_is_exact():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(30, 30))
    with torch.no_grad():  # rank-3 weight
        m[0].weight.copy_(torch.randn(30, 3) @ torch.randn(3, 30))
    x = torch.randn(4, 30)
    ref = m(x)
    recs = decompose(m, SVDConfig(rank_by="energy", energy=0.999999))
    assert recs[0]["rank"] == 3
    assert torch.allclose(m(x), ref, atol=1e-4)


def test_unknown_scope_name_is_an_error():
    with pytest.raises(ConfigError, match="no layer named"):
        decompose(build_model("lenet300"), SVDConfig(scope=Scope(names=("fc9",))))


@pytest.mark.parametrize("cfg", [
    SVDConfig(keep=0.3),
    TuckerConfig(scope=Scope(patterns=(r"layer\d\.\d\.conv\d",)), keep=0.3),
    CPConfig(scope=Scope(names=("layer2.0.conv2",)), keep=0.3),
    SeparableConfig(scope=Scope(patterns=(r"layer\d\.\d\.conv\d",)), depth_multiplier=2),
], ids=["svd", "tucker", "cp", "separable"])
def test_decomposed_model_saves_and_loads_with_equal_outputs(cfg, tmp_path):
    m = build_model("lenet300" if isinstance(cfg, SVDConfig) else "resnet8", dataset="mnist", width=8) \
        if not isinstance(cfg, SVDConfig) else build_model("lenet300", dataset="mnist")
    apply(m, cfg, Context())
    m.eval()
    path = torchslim.artifact.save(m, tmp_path / "m.safetensors")
    m2 = torchslim.artifact.load(path)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(m(x), m2(x))


def test_sensitivity_ranks_and_finetune_with_distillation(digits, tmp_path):
    train, test = digits
    m = build_model("mlp", dataset="digits", hidden=[64, 64])
    fit(m, train, TrainConfig(epochs=15, lr=3e-3), progress=False)
    from torchslim.analysis.evaluate import evaluate

    acc0 = evaluate(m, test)["accuracy"]
    calib = train.take(300)
    ctx = Context(train_data=train, calib_data=calib, stage_out=tmp_path / "stage", progress=False)
    cfg = SVDConfig(scope=Scope(names=("2", "4")), rank_by="sensitivity", candidates=(0.1, 0.3, 0.6),
                    tolerance=0.02, finetune=TrainConfig(epochs=2, lr=1e-3),
                    distill=DistillConfig(alpha=0.5, cache_teacher=True))
    recs = apply_stage(m, cfg, ctx).records["decompose"]
    assert all(r["status"] == "decomposed" or r["status"].startswith("skipped") for r in recs)
    assert any(r["status"] == "decomposed" for r in recs)
    assert (tmp_path / "stage" / "checkpoints" / "last.pt").exists()
    assert evaluate(m, test)["accuracy"] >= acc0 - 0.05


def test_cli_decompose_writes_a_loadable_artifact(tmp_path, capsys):
    from torchslim.cli import main

    src = tmp_path / "src.safetensors"
    torchslim.artifact.save(build_model("lenet300", dataset="digits"), src)
    out = tmp_path / "dec.safetensors"
    assert main(["decompose", str(src), "--method", "svd", "--keep", "0.3", "--layers", "fc1", "fc2", "--out", str(out),
                 "--json"]) == 0
    assert main(["eval", str(out), "--dataset", "digits", "--json"]) == 0
    m = torchslim.artifact.load(out)
    assert isinstance(m.fc1, nn.Sequential)
    out2 = tmp_path / "dec2.safetensors"
    assert main(["decompose", str(src), "--method", "svd", "--keep", "0.3", "--out", str(out2), "--json"]) == 0
    m2 = torchslim.artifact.load(out2)  # default scope: every Linear but the classifier
    assert isinstance(m2.fc1, nn.Sequential) and isinstance(m2.fc2, nn.Sequential) and isinstance(m2.fc3, nn.Linear)
    x = torch.rand(2, 1, 8, 8)
    ref = torchslim.artifact.load(src)
    assert m(x).shape == ref(x).shape
    assert sum(p.numel() for p in m.parameters()) < sum(p.numel() for p in ref.parameters())
