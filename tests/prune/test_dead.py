"""Unused units: which layer reads which (fx), and masking the units whose
outgoing weights are all pruned leaves the model's output bit for bit the same."""
import pytest
import torch
import torch.nn as nn

from torchslim.prune import masks_of, set_mask
from torchslim.prune.dead import prune_unused_units, unit_links, unused_units
from torchslim.prune.unstructured import prune_to_sparsity
from torchslim.zoo import build_model


def test_links_of_the_lenets():
    assert unit_links(build_model("lenet300", dataset="mnist")) == {"fc1": ("fc2", 1), "fc2": ("fc3", 1)}
    # conv2's 50 channels are flattened (4x4 each) into fc1's 800 inputs
    assert unit_links(build_model("lenet5", dataset="mnist")) == {"conv1": ("conv2", 1), "conv2": ("fc1", 16),
                                                                   "fc1": ("fc2", 1)}


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 4)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.c(self.b(h) + h)  # a's output has two readers: b and the residual add


def test_a_second_reader_unlinks():
    # a's output has two readers (b and the residual add), b's goes into the add: nothing is linked
    assert unit_links(Residual()) == {}


def _reference_unused(weights, links):
    """Plain loops: unit j of A is unused when B's input columns j*k..j*k+k-1 are all zero."""
    out = {}
    for a, (b, k) in links.items():
        w = weights[b]
        w = w.reshape(w.shape[0], w.shape[1], -1)
        out[a] = [all(float(v) == 0 for o in range(w.shape[0]) for i in range(j * k, j * k + k) for v in w[o, i])
                  for j in range(w.shape[1] // k)]
    return out


def test_unused_units_match_a_plain_reference_and_output_is_unchanged():
    torch.manual_seed(0)
    model = build_model("lenet5", dataset="mnist").eval()
    prune_to_sparsity(model, 0.9, ranking="layer", layer_amounts={"conv2": 0.95, "fc1": 0.97, "fc2": 0.9})
    # kill some units by hand: fc1 neurons 3, 7 (fc2 columns), conv2 channel 5 (fc1 columns)
    for layer, cols in (("fc2", [3, 7]), ("fc1", range(5 * 16, 6 * 16))):
        m = getattr(model, layer)
        mask = m.weight_mask.clone()
        mask[:, list(cols)] = 0
        set_mask(m, mask)
    links = unit_links(model)
    ref = _reference_unused({n: (m.weight_orig * m.weight_mask).detach() for n, m in model.named_modules()
                             if hasattr(m, "weight_mask")}, links)
    got = unused_units(model, links)
    assert {k: v.tolist() for k, v in got.items()} == ref
    assert got["fc1"][3] and got["fc1"][7] and got["conv2"][5]
    x = torch.rand(32, 1, 28, 28)
    with torch.no_grad():
        before = model(x)
    removed = prune_unused_units(model)
    assert removed["fc1"] >= 2 and removed["conv2"] >= 1
    with torch.no_grad():
        after = model(x)
    assert torch.equal(before, after)
    masks = masks_of(model)
    assert not masks["fc1"][3].any() and model.fc1.bias[3] == 0 and not masks["conv2"][5].any()
    assert model.conv2.bias[5] == 0
    assert prune_unused_units(model) == {}  # a fixed point


def test_cascade_reaches_the_units_feeding_a_removed_unit():
    torch.manual_seed(0)
    model = build_model("lenet300", dataset="mnist").eval()
    with torch.no_grad():
        model.fc3.weight[:, 0] = 0  # fc2 unit 0 unused ...
        model.fc2.weight[:, 5] = 0  # fc1 unit 5 read only by fc2 unit 0
        model.fc2.weight[0, 5] = 1.0
    x = torch.rand(16, 784)
    with torch.no_grad():
        before = model(x)
    assert prune_unused_units(model) == {"fc2": 1, "fc1": 1}
    with torch.no_grad():
        assert torch.equal(before, model(x))
    assert model.fc1.bias[5] == 0 and not masks_of(model)["fc1"][5].any()


def test_agp_with_unused_units_spends_the_budget_on_units_in_use(digits, tmp_path):
    from torchslim.prune import agp, sparsity_report
    from torchslim.train import TrainConfig

    torch.manual_seed(0)
    model = build_model("lenet300", dataset="digits")
    agp(model, 0.9, digits[0].take(640), TrainConfig(epochs=1, batch_size=64), end=0.6, frequency=2, ranking="layer",
        layer_sparsity={"fc2": 0.99, "fc3": 0.9}, unused_units=True, out_dir=tmp_path, progress=False)
    layers = sparsity_report(model)["layers"]
    # at least the targets: the units left unread by the last update are removed on top
    assert layers["fc1"]["sparsity"] >= 0.9 - 1e-3 and layers["fc2"]["sparsity"] >= 0.99 - 1e-3
    dead = unused_units(model)
    assert dead["fc1"].any()  # fc2 at 1% density leaves fc1 units unread
    for name, flags in dead.items():
        layer = getattr(model, name)
        assert not (layer.weight[flags] != 0).any() and not (layer.bias[flags] != 0).any(), name


# ------------------------------------------------- physical removal of dead units
def _plant(model):
    """Dead units by hand: constant units (no incoming weights, non-zero bias,
    some with act(b) = 0), unread units, on top of ordinary sparsity."""
    from torchslim.prune import masks as M

    prune_to_sparsity(model, 0.5, ranking="layer")
    M.remove(model)
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        for i, n in enumerate(names[:-1]):
            m = getattr(model, n)
            m.weight[[1, 4, 6]] = 0  # constant units
            m.bias[1], m.bias[4], m.bias[6] = 0.7, -0.3, 0.0
            reader = getattr(model, names[i + 1])
            k = reader.weight.shape[1] // m.weight.shape[0]
            reader.weight[:, 2 * k:3 * k] = 0  # unit 2 unread
            reader.weight[:, 6 * k:7 * k] = 0  # unit 6 neither read nor fed
    return names


@pytest.mark.parametrize("arch", ["lenet300", "lenet5"])
def test_remove_dead_units_is_exact_and_round_trips(arch, tmp_path):
    import copy

    import torchslim
    from torchslim.codec.compact import save_compact
    from torchslim.prune.dead import remove_dead_units

    torch.manual_seed(0)
    model = build_model(arch, dataset="mnist").eval()
    names = _plant(model)
    ref = copy.deepcopy(model)
    widths = {n: getattr(model, n).weight.shape[0] for n in names}
    x = torch.rand(32, 1, 28, 28)
    removed = remove_dead_units(model, (torch.rand(2, 1, 28, 28),))
    for n in names[:-1]:
        assert removed[n]["removed"] >= 4 and removed[n]["folded"] >= 2
        assert getattr(model, n).weight.shape[0] == widths[n] - removed[n]["removed"]
    with torch.no_grad():
        want = ref(x)
        assert torch.allclose(model(x), want, atol=1e-6, rtol=0)
        for path, save in ((tmp_path / "m.safetensors", torchslim.save), (tmp_path / "m.tslim", save_compact)):
            save(model, path)
            back = torchslim.load(path)
            assert [getattr(back, n).weight.shape for n in names] == [getattr(model, n).weight.shape for n in names]
            assert torch.allclose(back(x), want, atol=1e-6, rtol=0)
    assert remove_dead_units(model, (x[:1],)) == {}  # a fixed point


def test_remove_dead_units_slices_batchnorm_but_does_not_fold_through_it():
    import copy

    from torchslim.prune.dead import remove_dead_units

    class WithBN(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.bn, self.b = nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)

        def forward(self, x):
            return self.b(torch.relu(self.bn(self.a(x))))

    torch.manual_seed(0)
    model = WithBN()
    model.bn.running_mean.uniform_(-1, 1)
    model.eval()
    with torch.no_grad():
        model.a.weight[2] = 0  # constant through a BatchNorm: kept
        model.b.weight[:, 5] = 0  # unread: removed, with its BatchNorm channel
    ref = copy.deepcopy(model)
    assert remove_dead_units(model, (torch.rand(2, 6),)) == {"a": {"folded": 0, "removed": 1}}
    assert model.bn.num_features == 7 and model.b.in_features == 7
    x = torch.rand(16, 6)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-6, rtol=0)


def test_conv_reader_with_padding_keeps_non_zero_constants():
    import copy

    from torchslim.prune.dead import remove_dead_units

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))
    with torch.no_grad():
        model[0].weight[1] = 0
        model[0].bias[1] = 0.5  # constant 0.5, but the reader's zero padding makes its contribution vary
        model[0].weight[3] = 0
        model[0].bias[3] = -0.5  # relu(-0.5) = 0: removed exactly
    ref = copy.deepcopy(model)
    assert remove_dead_units(model, (torch.rand(1, 1, 8, 8),)) == {"0": {"folded": 1, "removed": 1}}
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-6, rtol=0)


def test_remove_dead_config_round_trip_needs_permanent_and_kmeans_follows(digits, tmp_path):
    import copy

    from torchslim.core import ConfigError, Context, apply, apply_stage, config_class
    for name in ("prune.agp", "prune.unstructured"):
        cls = config_class(name)
        cfg = cls.from_dict({"permanent": True, "remove_dead": True, "sparsity": 0.5})
        assert cls.from_dict(cfg.to_dict()) == cfg and cfg.changed()["remove_dead"] is True
        assert "remove_dead" not in cls().changed()  # old fingerprints survive
        with pytest.raises(ConfigError, match="permanent"):
            cls.from_dict({"remove_dead": True})
    from torchslim.zoo import example_inputs

    train = digits[0].take(256)
    model = build_model("lenet300", dataset="digits").eval()
    ctx = Context(train_data=train, calib_data=train, out_dir=tmp_path, progress=False)
    cfg = config_class("prune.unstructured").from_dict(
        {"sparsity": 0.9, "ranking": "layer", "layer_sparsity": {"fc1": 0.9, "fc2": 0.97, "fc3": 0.9},
         "permanent": True, "unused_units": True, "remove_dead": True})
    before = copy.deepcopy(model)
    apply(before, config_class("prune.unstructured").from_dict({**cfg.to_dict(), "remove_dead": False}), Context(
        train_data=train, calib_data=train, out_dir=tmp_path / "ref", progress=False))
    res = apply_stage(model, cfg, ctx)
    model = res.model
    assert res.records["dead_units"] and model.fc2.in_features < 300
    x = example_inputs(model, batch=16)[0]
    with torch.no_grad():
        assert torch.allclose(model(x), before(x), atol=1e-6, rtol=0)
    km = config_class("quantize.kmeans").from_dict({"bits": 4, "bias_bits": 4})
    model = apply(model, km, ctx)
    assert model.fc2.in_features < 300
    with torch.no_grad():
        assert model(x).shape == (x.shape[0], 10)
