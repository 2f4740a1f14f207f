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
