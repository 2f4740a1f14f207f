"""Sensitivity scans (values against a hand-pruned oracle, model untouched,
JSON/PNG outputs), MACs per layer against FlopCounterMode, greedy allocation."""
import copy

import pytest
import torch
import torch.nn as nn

from torchslim.core import ConfigError
from torchslim.prune import SensitivityScan, allocate, layer_costs, masks_from_scores, sensitivity_scan


@pytest.fixture(scope="module")
def trained(digits):
    from torchslim.train import TrainConfig, fit
    from torchslim.zoo import build_model

    torch.manual_seed(0)
    m = build_model("lenet300", dataset="digits")
    fit(m, digits[0], TrainConfig(epochs=4, batch_size=64, lr=3e-3), progress=False)
    return m


def test_scan_values_match_hand_pruned_layer(trained, digits, tmp_path):
    calib = digits[0].take(300)  # a slice of train: never the test split
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    scan = sensitivity_scan(trained, calib, sparsities=(0.5, 0.9, 0.99))
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in before.items())  # untouched
    assert list(scan.layers) == ["fc1", "fc2", "fc3"]
    ref = copy.deepcopy(trained)
    w = ref.fc2.weight.detach()
    keep = masks_from_scores({"w": w.abs()}, {}, round(0.9 * w.numel()))["w"]
    with torch.no_grad():
        ref.fc2.weight.mul_(keep)
        acc = float((ref(calib.x).argmax(1) == calib.y).float().mean())
    assert scan.layers["fc2"]["values"][1] == pytest.approx(acc)
    assert scan.dense == pytest.approx(float((trained(calib.x).argmax(1) == calib.y).float().mean()))
    assert scan.layers["fc1"]["params"] == 64 * 300 and scan.layers["fc1"]["macs"] == 64 * 300
    # files
    p = scan.save_json(tmp_path / "s.json")
    back = SensitivityScan.load_json(p)
    assert back == scan
    png = scan.plot(tmp_path / "s.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loss_scan = sensitivity_scan(trained, calib, sparsities=(0.9,), metric="loss")
    assert loss_scan.layers["fc1"]["values"][0] > loss_scan.dense  # 90% of fc1 pruned costs loss
    assert loss_scan.metric == "loss" and loss_scan.dense > 0


def test_layer_macs_match_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2, groups=2),
                          nn.Flatten(), nn.Linear(4 * 3 * 3, 10))
    x = torch.randn(2, 3, 8, 8)
    layers = {"0": model[0], "2": model[2], "4": model[4]}
    costs = layer_costs(model, layers, (x,))
    for name, layer in layers.items():
        inp = {}
        h = layer.register_forward_hook(lambda m, i, o: inp.update(x=i[0]))
        model(x)
        h.remove()
        with FlopCounterMode(display=False) as fc:
            layer(inp["x"])
        assert costs[name]["macs"] == fc.get_total_flops() // 2 // 2, name  # flops = 2 * MACs, batch 2


def _scan(values: dict, params: dict, sparsities=(0.5, 0.9)):
    return SensitivityScan(metric="accuracy", sparsities=list(sparsities), dense=1.0,
                           layers={n: {"params": params[n], "macs": 2 * params[n], "values": v}
                                   for n, v in values.items()})


def test_allocation_is_greedy_and_meets_target():
    scan = _scan({"a": [1.0, 0.99], "b": [0.9, 0.5], "c": [1.0, 1.0]}, {"a": 100, "b": 100, "c": 100})
    alloc = allocate(scan, 0.5)
    # cheapest first: c (no loss) to 0.9, then a to 0.5 (0 loss), then partway into a's 0.9 step
    assert alloc["c"] == 0.9 and alloc["b"] == 0.0
    removed = sum(100 * s for s in alloc.values()) / 300
    assert removed == pytest.approx(0.5)
    alloc_hi = allocate(scan, 0.8)
    assert sum(100 * s for s in alloc_hi.values()) / 300 == pytest.approx(0.8)
    assert alloc_hi["b"] > 0  # had to touch the sensitive layer
    with pytest.raises(ConfigError, match="at most"):
        allocate(scan, 0.95)
    with pytest.raises(ConfigError, match="latency"):
        allocate(scan, 0.5, budget="latency")


def test_allocation_with_measured_latency():
    scan = _scan({"a": [1.0, 1.0], "b": [1.0, 1.0]}, {"a": 10, "b": 10})
    scan.layers["a"]["latency_ms"] = [1.0, 1.0, 0.4]  # dense, 0.5, 0.9
    scan.layers["b"]["latency_ms"] = [1.0, 1.0, 1.0]  # no sparse speedup at all
    alloc = allocate(scan, 0.25, budget="latency")
    assert alloc == {"a": 0.9, "b": 0.0}
    with pytest.raises(ConfigError):
        allocate(scan, 0.5, budget="latency")


def test_scan_with_latency_measures_each_sparsity(trained, digits):
    scan = sensitivity_scan(trained, digits[0].take(100), sparsities=(0.9, 0.99), latency=True,
                            scope=__import__("torchslim").Scope(names=("fc1",)))
    lat = scan.layers["fc1"]["latency_ms"]
    assert len(lat) == 3 and all(v > 0 for v in lat) and max(lat[1:]) <= lat[0]
