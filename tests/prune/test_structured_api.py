"""torchslim.prune.structured: targets, rounding, importance criteria, artifact
round trip, config round trip, handler, slimming penalty, CLI."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import torchslim
from torchslim.artifact import load, save
from torchslim.core import Context, apply, apply_stage
from torchslim.core.errors import ConfigError, ModelError
from torchslim.core.scope import Scope
from torchslim.prune import SlimmingPenalty, StructuredConfig, count_cost, structured
from torchslim.train import TrainConfig
from torchslim.zoo import build_model


def _macs(model, x):
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model.eval()(*x)
    return fc.get_total_flops() // 2


def test_structured_is_the_function():
    assert callable(torchslim.prune.structured)


@pytest.mark.parametrize("name", ["resnet8", "mobilenetv2"])
@pytest.mark.parametrize("round_to", [None, 8])
def test_macs_target_within_5_percent(name, round_to):
    m = build_model(name, dataset="mnist").eval()
    x = (torch.rand(1, 1, 28, 28),)
    p = structured(m, x, ratio=0.5, target="macs", round_to=round_to)
    reduction = 1 - _macs(p, x) / _macs(m, x)  # checked against FlopCounterMode, not our own counter
    assert abs(reduction - 0.5) <= 0.05 * 0.5
    assert p(*x).shape == m(*x).shape
    if round_to:
        for mod in p.modules():
            if isinstance(mod, nn.Conv2d) and mod.out_channels not in (10,):
                assert mod.out_channels % 8 == 0, mod


def test_params_target_and_channels_ratio():
    m = build_model("resnet8", dataset="mnist").eval()
    x = (torch.rand(1, 1, 28, 28),)
    p = structured(m, x, ratio=0.3, target="params")
    red = 1 - count_cost(p, x, "params") / count_cost(m, x, "params")
    assert abs(red - 0.3) <= 0.05 * 0.3
    q = structured(m, x, ratio=0.25, target="channels")
    assert q.layer3[0].conv1.out_channels == 48 and q.stem[0].out_channels == 12


def _dead_resnet8():
    m = build_model("resnet8", dataset="mnist")
    idx = [2, 9, 30]
    with torch.no_grad():
        m.layer2[0].conv1.weight[idx] = 0
        m.layer2[0].bn1.weight[idx] = 0
        m.layer2[0].bn1.bias[idx] = 0
    return m.eval(), idx


@pytest.mark.parametrize("criterion", ["l1", "activation", "apoz", "taylor", "bn_scale"])
def test_importance_criteria_find_dead_channels(criterion, mnist_small):
    m, idx = _dead_resnet8()
    x = (torch.rand(2, 1, 28, 28),)
    calib = mnist_small[0].take(64)
    p = structured(m, x, ratio=3 / 32, target="channels", importance=criterion, calib_data=calib,
                   scope=Scope(names=("layer2.0.conv1",)))
    assert p.layer2[0].conv1.out_channels == 29
    with torch.no_grad():
        torch.testing.assert_close(p(calib.x[:8]), m(calib.x[:8]), atol=1e-5, rtol=1e-4)


def test_data_criteria_need_data():
    m = build_model("lenet5", dataset="mnist")
    with pytest.raises(ConfigError, match="calib"):
        structured(m, (torch.rand(1, 1, 28, 28),), importance="taylor")


def test_errors_are_clear():
    m = build_model("lenet5", dataset="mnist")
    x = (torch.rand(1, 1, 28, 28),)
    with pytest.raises(ConfigError, match="ratio"):
        structured(m, x, ratio=1.0)
    with pytest.raises(ConfigError, match="target"):
        structured(m, x, target="flops")
    with pytest.raises(ConfigError, match="no layer named 'conv9'"):
        structured(m, x, scope=Scope(names=("conv9",)))
    torch.nn.utils.prune.l1_unstructured(m.conv1, "weight", amount=0.5)
    with pytest.raises(ModelError, match="conv1.*mask"):
        structured(m, x)


def test_artifact_rebuilds_pruned_cnn_and_vit(tmp_path):
    for name in ("resnet8", "vit"):
        m = build_model(name, dataset="mnist").eval()
        x = (torch.rand(3, 1, 28, 28),)
        p = structured(m, x, ratio=0.4, target="macs").eval()
        path = save(p, tmp_path / f"{name}.safetensors")
        back = load(path)
        with torch.no_grad():
            assert torch.equal(back(*x), p(*x))
        assert sum(t.numel() for t in back.parameters()) == sum(t.numel() for t in p.parameters())


def test_artifact_rebuilds_pruned_minilm(tmp_path):
    try:
        m = build_model("minilm", num_layers=2).eval()
    except Exception as e:  # pragma: no cover
        pytest.skip(f"minilm unavailable: {e}")
    x = m.example_inputs(2, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = structured(m, x, ratio=0.5, target="channels").eval()
    att = p.bert.encoder.layer[0].attention.self
    assert att.num_attention_heads == 6 and p.bert.encoder.layer[1].intermediate.dense.out_features == 768
    path = save(p, tmp_path / "minilm.safetensors")
    back = load(path)
    batt = back.bert.encoder.layer[0].attention.self
    assert (batt.num_attention_heads, batt.all_head_size) == (6, att.all_head_size)
    with torch.no_grad():
        torch.testing.assert_close(back(*x), p(*x), atol=1e-6, rtol=1e-5)


def test_config_round_trip_and_validation():
    cfg = StructuredConfig(ratio=0.4, target="params", importance="bn_scale", round_to=8,
                           scope=Scope(exclude_names=("fc",)), slimming=TrainConfig(epochs=1), finetune=TrainConfig(lr=1e-4))
    assert StructuredConfig.from_dict(cfg.to_dict()) == cfg
    assert StructuredConfig.from_yaml(cfg.to_yaml()) == cfg
    assert StructuredConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="ratio"):
        StructuredConfig(ratio=1.5)
    with pytest.raises(ConfigError, match="allowed fields"):
        StructuredConfig.from_dict({"sparsity": 0.5})
    with pytest.raises(ConfigError):
        StructuredConfig(importance="magic")


def test_handler_prunes_and_finetunes(tmp_path, mnist_small):
    train, test = mnist_small
    m = build_model("lenet5", dataset="mnist")
    cfg = StructuredConfig(ratio=0.5, target="macs", importance="activation",
                           finetune=TrainConfig(epochs=1, max_steps_per_epoch=3, batch_size=32))
    ctx = Context(train_data=train, calib_data=train.take(64), dataset="mnist", stage_out=tmp_path, progress=False)
    res = apply_stage(m, cfg, ctx)
    p = res.model
    x = (torch.rand(1, 1, 28, 28),)
    assert abs(1 - _macs(p, x) / _macs(m, x) - 0.5) <= 0.025
    assert (tmp_path / "finetune" / "checkpoints" / "last.pt").exists()
    assert res.records["structured"]["groups"]


def test_slimming_penalty_is_l1_of_bn_scales():
    m = build_model("resnet8", dataset="mnist")
    cb = SlimmingPenalty(m, 1e-3, scope=Scope(exclude_names=("stem.1",)))
    state = type("S", (), {"model": m})()
    expected = 1e-3 * sum(mod.weight.abs().sum() for n, mod in m.named_modules()
                          if isinstance(mod, nn.BatchNorm2d) and n != "stem.1")
    loss = cb.extra_loss(state)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.all(m.layer1[0].bn1.weight.grad == 1e-3 * torch.sign(m.layer1[0].bn1.weight.detach()))
    assert m.stem[1].weight.grad is None
    with pytest.raises(ConfigError, match="BatchNorm"):
        SlimmingPenalty(build_model("lenet5", dataset="mnist"))


def test_cli_prune_structured(tmp_path, capsys):
    from torchslim.cli import main

    out = tmp_path / "p.safetensors"
    rc = main(["prune-structured", "lenet300", "--dataset", "digits", "--ratio", "0.5", "--target", "params",
               "--out", str(out), "--json", "--no-progress", "--calib", "100"])
    assert rc == 0
    import json

    rep = json.loads(capsys.readouterr().out)
    assert abs(1 - rep["after"]["params"] / rep["before"]["params"] - 0.5) <= 0.025
    back = load(out)
    assert sum(p.numel() for p in back.parameters()) == rep["after"]["params"]


def test_remove_dead_residual_blocks(tmp_path):
    """Oracle: a block whose branch outputs zero is the identity; removing it keeps the outputs."""
    from torchslim.prune import remove_blocks, residual_blocks

    m = build_model("resnet8", dataset="mnist", blocks=[2, 2, 1]).eval()
    x = (torch.rand(3, 1, 28, 28),)
    assert set(residual_blocks(m, x)) == {"layer1.0", "layer1.1", "layer2.1"}  # layer2.0 has a downsample conv
    with torch.no_grad():
        m.layer2[1].bn2.weight.zero_()
        m.layer2[1].bn2.bias.zero_()
        ref = m(*x)
    p = remove_blocks(m, x, count=1)
    assert p.torchslim_blocks["removed"] == ["layer2.1"] and isinstance(p.layer2[1], nn.ReLU)
    with torch.no_grad():
        torch.testing.assert_close(p(*x), ref)
    back = load(save(p, tmp_path / "r.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(back(*x), ref)

    v = build_model("vit", dataset="mnist").eval()
    with torch.no_grad():
        for lin in (v.blocks[1].attn.proj, v.blocks[1].mlp.fc2):
            lin.weight.zero_()
            lin.bias.zero_()
        ref = v(*x)
    p = remove_blocks(v, x, count=1)
    assert isinstance(p.blocks[1], nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(p(*x), ref)
    with pytest.raises(ModelError, match="removable"):
        remove_blocks(v, x, count=5)


def _layer3_macs(m):
    return sum(c.in_channels * c.out_channels // c.groups * c.kernel_size[0] * c.kernel_size[1] * 49
               for c in m.layer3.modules() if isinstance(c, nn.Conv2d))


def test_latency_allocation_cuts_slow_groups_first():
    """A synthetic latency in which layer3's MACs cost 5x: the latency
    allocation must cut layer3 harder than the uniform one, still meet the MAC
    target (checked with FlopCounterMode), and report its weights."""
    m = build_model("resnet8", dataset="mnist").eval()
    x = (torch.rand(1, 1, 28, 28),)

    def cost(net):
        return _macs(net, x) + 4 * _layer3_macs(net)

    seen = []

    def fake_speedup(dense, cand):
        seen.append(cand)
        return cost(dense) / cost(cand)

    uni = structured(m, x, ratio=0.5, target="macs", round_to=8)
    lat = structured(m, x, ratio=0.5, target="macs", round_to=8, allocation="latency", latency_fn=fake_speedup)
    assert abs(1 - _macs(lat, x) / _macs(m, x) - 0.5) <= 0.05 * 0.5
    assert lat(*x).shape == m(*x).shape
    assert len(seen) == 6  # one candidate per prunable group
    w = lat.torchslim_structured["latency_weights"]
    l3 = [v for k, v in w.items() if k.startswith("layer3")]
    l1 = [v for k, v in w.items() if k.startswith("layer1")]
    assert min(l3) > max(l1)
    assert _layer3_macs(lat) < _layer3_macs(uni)
    assert cost(lat) < cost(uni)
    with pytest.raises(ConfigError, match="allocation"):
        structured(m, x, ratio=0.5, allocation="fastest")


def test_latency_target_meets_the_speedup_with_fewest_channels_removed():
    """A synthetic latency proportional to MACs + 4x layer3's MACs: the
    latency target must reach the speedup, report what it measured, and be the
    least pruned of the candidates it measured that reach it."""
    m = build_model("resnet8", dataset="mnist").eval()
    x = (torch.rand(1, 1, 28, 28),)

    def cost(net):
        return _macs(net, x) + 4 * _layer3_macs(net)

    measured = []

    def fake_speedup(dense, cand):
        s = cost(dense) / cost(cand)
        measured.append((s, sum(p.numel() for p in cand.parameters())))
        return s

    p = structured(m, x, ratio=0.375, target="latency", round_to=8, latency_fn=fake_speedup)
    info = p.torchslim_structured
    assert cost(m) / cost(p) >= 1.6
    assert info["achieved_reduction"] == pytest.approx(1 - cost(p) / cost(m))
    assert info["target"] == "latency" and len(measured) <= 10
    n = sum(q.numel() for q in p.parameters())
    assert n == max(k for s, k in measured if s >= 1.6)  # nothing measured fast enough kept more
    with pytest.raises(ModelError, match="cannot remove 99% of the latency"):
        structured(m, x, ratio=0.99, target="latency", round_to=8, latency_fn=fake_speedup)


def test_latency_target_measures_for_real_in_both_runtimes():
    """Real timing: an MLP whose hidden layer dominates its cost, in eager
    PyTorch and in ONNX Runtime (speedup_fn exports both models)."""
    from torchslim.analysis.latency import speedup_fn

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(256, 2048), nn.ReLU(), nn.Linear(2048, 10)).eval()
    x = (torch.rand(64, 256),)
    for runtime in ("torch", "onnxruntime"):
        fn = speedup_fn([x], runtime=runtime, threads=1, repeats=9)
        p = structured(m, x, ratio=0.3, target="latency", latency_fn=fn, scope=Scope(exclude_names=("2",)))
        assert p[0].out_features < 2048 and p(*x).shape == (64, 10)
        assert p.torchslim_structured["achieved_reduction"] >= 0.3
    with pytest.raises(ConfigError, match="runtime"):
        speedup_fn([x], runtime="tensorrt")


def test_latency_config_round_trip_and_handler(mnist_small):
    cfg = StructuredConfig(ratio=0.2, target="latency", allocation="latency", latency_runtime="onnxruntime",
                           latency_batch_sizes=(1, 8), latency_threads=1, round_to=8)
    assert StructuredConfig.from_yaml(cfg.to_yaml()) == cfg
    with pytest.raises(ConfigError, match="latency_batch_sizes"):
        StructuredConfig(latency_batch_sizes=(0,))
    with pytest.raises(ConfigError, match="latency_threads"):
        StructuredConfig(latency_threads=0)
    m = build_model("lenet5", dataset="mnist")
    p = apply(m, StructuredConfig(ratio=0.2, target="latency", latency_batch_sizes=(16,), latency_threads=1),
              Context(dataset="mnist", progress=False))
    assert p.torchslim_structured["target"] == "latency"
    assert p.torchslim_structured["achieved_reduction"] >= 0.2
