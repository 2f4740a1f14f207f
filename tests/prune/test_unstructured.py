"""Unstructured pruning: masks against torch.nn.utils.prune (the oracle),
importance criteria against plain references, reversible masks, zero
gradients during fine-tuning, sparse artifacts."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import prune as torch_prune

from torchslim.artifact import load, save
from torchslim.core import ConfigError, Scope
from torchslim.prune import (attach_mask, importance_scores, is_masked, masks_of, prune_to_sparsity, remove,
                             sparsity_report, unstructured)
from torchslim.train import Callback, TrainConfig, fit


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 5))


class Data:
    def __init__(self, n=64, d=16, k=5, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, d, generator=g)
        self.y = torch.randint(0, k, (n,), generator=g)

    def __len__(self):
        return len(self.y)


def test_float_and_int_amount_match_torch_l1_unstructured():
    for amount in (0.3, 0.75, 100):
        ours, ref = mlp(), mlp()
        unstructured(ours, amount, ranking="layer")
        for i in (0, 2, 4):
            torch_prune.l1_unstructured(ref[i], "weight", amount)
            assert torch.equal(ours[i].weight_mask, ref[i].weight_mask), (amount, i)


def test_repeated_calls_compound_like_torch():
    ours, ref = mlp(), mlp()
    for _ in range(3):
        unstructured(ours, 0.4, ranking="layer")
        torch_prune.l1_unstructured(ref[0], "weight", 0.4)
    assert torch.equal(ours[0].weight_mask, ref[0].weight_mask)
    assert abs(sparsity_report(ours)["layers"]["0"]["sparsity"] - (1 - 0.6 ** 3)) < 0.01


def test_global_ranking_matches_torch_global_unstructured():
    ours, ref = mlp(), mlp()
    unstructured(ours, 0.8, ranking="global")
    torch_prune.global_unstructured([(ref[i], "weight") for i in (0, 2, 4)], torch_prune.L1Unstructured, amount=0.8)
    for i in (0, 2, 4):
        assert torch.equal(ours[i].weight_mask, ref[i].weight_mask)


def test_prune_to_sparsity_exact_and_monotone():
    m = mlp()
    prune_to_sparsity(m, 0.9)
    rep = sparsity_report(m)
    assert rep["zeros"] == round(0.9 * rep["params"])
    before = masks_of(m)
    prune_to_sparsity(m, 0.5)  # lower target: masks never regrow
    assert all(torch.equal(before[k], v) for k, v in masks_of(m).items())
    was = sparsity_report(m)["layers"]
    prune_to_sparsity(m, 0.95, ranking="layer")
    for name, layer in sparsity_report(m)["layers"].items():
        assert abs(layer["sparsity"] - max(0.95, was[name]["sparsity"])) < 1e-2
    assert all((before[k] | ~v).all() for k, v in masks_of(m).items())  # old zeros stay zero


def test_layer_amounts_and_scope():
    m = mlp()
    prune_to_sparsity(m, 0.5, ranking="layer", layer_amounts={"4": 0.1}, scope=Scope(exclude_names=("2",)))
    rep = sparsity_report(m)["layers"]
    assert abs(rep["0"]["sparsity"] - 0.5) < 1e-3 and abs(rep["4"]["sparsity"] - 0.1) < 1e-2
    assert rep["2"]["sparsity"] == 0.0 and not is_masked(m[2])
    with pytest.raises(ConfigError, match="no layer named"):
        unstructured(m, 0.5, scope=Scope(exclude_names=("fc9",)))
    with pytest.raises(ConfigError, match="not in scope"):
        unstructured(m, 0.5, layer_amounts={"2": 0.3}, scope=Scope(exclude_names=("2",)))
    with pytest.raises(ConfigError, match="cannot prune"):
        unstructured(m, 10 ** 6)


def test_magnitude_block_pooling_matches_loop():
    m = mlp()
    w = m[2].weight.detach()
    for how in ("l1", "l2", "max"):
        s = importance_scores(m, {"2": m[2]}, how, block=(4, 4))["2"]
        ref = torch.empty_like(w)
        for r in range(0, 24, 4):
            for c in range(0, 32, 4):
                b = w[r:r + 4, c:c + 4]
                v = b.abs().sum() if how == "l1" else b.pow(2).sum().sqrt() if how == "l2" else b.abs().max()
                ref[r:r + 4, c:c + 4] = v
        assert torch.allclose(s, ref, atol=1e-6), how


def _batch_grads(model, data, param, batch_size):
    out = []
    for i in range(0, len(data), batch_size):
        model.zero_grad()
        F.cross_entropy(model(data.x[i:i + batch_size]), data.y[i:i + batch_size]).backward()
        out.append(param.grad.detach().clone())
    return out


def test_gradient_taylor_fisher_against_plain_loops():
    torch.manual_seed(0)
    m, data = mlp(), Data(64)
    attach_mask(m[0], (torch.rand(32, 16) > 0.3).float())  # on a masked layer too
    layers = {"0": m[0], "2": m[2]}
    # _batches takes a seeded permutation: use batch_size = len(data) so the single batch is all the data
    g = importance_scores(m, layers, "gradient", data=data, batches=1, batch_size=64)
    t = importance_scores(m, layers, "taylor", data=data, batches=1, batch_size=64)
    f = importance_scores(m, layers, "obd_fisher", data=data, batches=1, batch_size=64)
    w_eff = m[0].weight_orig.detach() * m[0].weight_mask
    (grad,) = _batch_grads(m, data, m[0].weight_orig, 64)
    assert torch.allclose(g["0"], grad.abs(), atol=1e-7)
    assert torch.allclose(t["0"], (grad * w_eff).abs(), atol=1e-7)
    per_sample = torch.stack(_batch_grads(m, data, m[2].weight, 1))
    fisher = per_sample.pow(2).mean(0)
    assert torch.allclose(f["2"], 0.5 * fisher * m[2].weight.detach().pow(2), rtol=1e-4, atol=1e-10)


def test_hutchinson_estimates_exact_hessian_diagonal():
    from torchslim.prune.importance import _hutchinson_diag

    torch.manual_seed(0)
    lin = nn.Linear(4, 3)
    data = Data(32, d=4, k=3)
    w0 = lin.weight.detach().clone()

    def loss_of(w):
        return F.cross_entropy(F.linear(data.x, w, lin.bias), data.y)

    exact = torch.autograd.functional.hessian(loss_of, w0).reshape(12, 12).diagonal().reshape(3, 4)
    est = _hutchinson_diag(lin, {"l": lin}, [(data.x, data.y)], lambda net, x, y: F.cross_entropy(net(x), y),
                           seed=0, probes=3000)["l"]
    assert torch.allclose(est, exact, rtol=0.15, atol=2e-3)


def test_data_criteria_need_data():
    from torchslim.core import DataError

    with pytest.raises(DataError, match="needs data"):
        unstructured(mlp(), 0.5, criterion="taylor")
    with pytest.raises(ConfigError, match="unknown importance criterion"):
        unstructured(mlp(), 0.5, criterion="magic")


def test_pruned_gradients_stay_zero_during_finetuning(digits):
    from torchslim.zoo import build_model

    train, _ = digits
    model = build_model("lenet300", dataset="digits")
    prune_to_sparsity(model, 0.8, criterion="random")
    masks = masks_of(model)
    seen = []

    class Check(Callback):
        def on_after_backward(self, state):
            for name, mask in masks.items():
                g = state.model.get_submodule(name).weight_orig.grad
                seen.append(float(g[~mask].abs().max()))

    fit(model, train.take(512), TrainConfig(epochs=1, batch_size=64, lr=1e-2, weight_decay=1e-3, optimizer="adamw"),
        callbacks=[Check()], progress=False)
    assert seen and max(seen) == 0.0
    for name, mask in masks.items():
        layer = model.get_submodule(name)
        assert (layer.weight[~mask] == 0).all()
        assert torch.equal(masks_of(model)[name], mask)


def test_remove_makes_masks_permanent():
    m = mlp()
    unstructured(m, 0.7)
    x = torch.randn(8, 16)
    y = m(x)
    remove(m)
    assert not any(is_masked(l) for l in m.modules())
    assert isinstance(m[0].weight, nn.Parameter) and "0.weight_orig" not in m.state_dict()
    assert torch.allclose(m(x), y)
    assert abs(sparsity_report(m)["sparsity"] - 0.7) < 1e-3


def test_artifact_shrinks_with_sparsity_and_round_trips(tmp_path):
    from torchslim.zoo import build_model

    sizes = {}
    for s in (0.0, 0.5, 0.9):
        torch.manual_seed(0)
        m = build_model("lenet300", dataset="digits")
        if s:
            prune_to_sparsity(m, s)
        p = save(m, tmp_path / f"m{s}.safetensors")
        sizes[s] = p.stat().st_size
        back = load(p)
        x = torch.rand(4, 1, 8, 8)
        assert torch.allclose(back(x), m(x))
        assert "fc1.weight_orig" not in back.state_dict()
        if s:
            assert is_masked(m.fc1)  # saving leaves the caller's masks reversible
    assert sizes[0.9] < sizes[0.5] < sizes[0.0]
    # bitmap (1 bit/weight) + 10% fp32 values ~ 0.13 of dense for the weights
    assert sizes[0.9] < 0.2 * sizes[0.0]


def test_fisher_on_a_conv_layer_matches_per_sample_loop():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4))

    class D:
        x = torch.randn(16, 2, 6, 6)
        y = torch.randint(0, 4, (16,))

        def __len__(self):
            return 16

    f = importance_scores(net, {"0": net[0]}, "obd_fisher", data=D(), batches=1, batch_size=16)["0"]
    grads = torch.stack(_batch_grads(net, D(), net[0].weight, 1))
    assert torch.allclose(f, 0.5 * grads.pow(2).mean(0) * net[0].weight.detach().pow(2), rtol=1e-4, atol=1e-12)
