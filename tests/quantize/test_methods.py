"""Every quantize.* config: round-trip of the config, the handler on real data,
and a save/load round trip of the result through the artifact."""
import copy

import pytest

from torchslim.core.errors import ConfigError
import torch

import torchslim
from torchslim.analysis.evaluate import evaluate
from torchslim.core import Context, apply, apply_stage
from torchslim.core.config import registered_configs
from torchslim.quantize import (DynamicConfig, HalfConfig, KMeansConfig, MixedConfig, PTQConfig, QATConfig,
                                WeightOnlyConfig, WeightSharing, choose_bits, codebook_of, kmeans_1d, quant_layers,
                                share_weights)
from torchslim.train import TrainConfig, fit

NAMES = ["quantize.ptq", "quantize.qat", "quantize.dynamic", "quantize.weight_only", "quantize.mixed",
         "quantize.kmeans", "quantize.half"]


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    cls = registered_configs()[name]
    c = cls()
    assert cls.from_dict(c.to_dict()) == c
    assert cls.from_json(c.to_json()) == c
    assert cls.from_yaml(c.to_yaml()) == c


SMALL_FT = TrainConfig(epochs=1, batch_size=64, lr=1e-4, max_steps_per_epoch=5)
CASES = {
    "dynamic": DynamicConfig(),
    "weight_only_rtn": WeightOnlyConfig(method="rtn", bits=4, group_size=16),
    "weight_only_gptq": WeightOnlyConfig(method="gptq", bits=4, group_size=16, num_batches=1),
    "weight_only_pow2": WeightOnlyConfig(method="pow2", bits=5),
    "mixed": MixedConfig(avg_bits=5.0, num_batches=1, candidate_bits=(4, 8)),
    "kmeans": KMeansConfig(bits=4, finetune=SMALL_FT),
    "qat": QATConfig(weight_bits=4, num_batches=1, finetune=SMALL_FT),
}


@pytest.mark.parametrize("case", list(CASES))
def test_handler_accuracy_and_artifact_round_trip(case, lenet5, tmp_path):
    m, calib, test, train = lenet5
    base = evaluate(m, test)["accuracy"]
    ctx = Context(train_data=train, calib_data=calib, progress=False, stage_out=tmp_path / "stage")
    res = apply_stage(m, CASES[case], ctx)
    q = res.model
    acc = evaluate(q, test)["accuracy"]
    assert acc >= base - 0.03, (case, base, acc)
    path = torchslim.artifact.save(q, tmp_path / "q.safetensors")
    r = torchslim.artifact.load(path)
    x = test.x[:32]
    assert torch.allclose(r(x), q(x), atol=1e-6)
    assert len(quant_layers(r)) == len(quant_layers(q))
    if case == "weight_only_pow2":
        for name in ("conv1", "fc1"):
            w = q.get_submodule(name).weight.detach()
            for row in w.reshape(w.shape[0], -1):
                mags = torch.unique(row.abs())
                mags = mags[mags > 0]
                assert len(mags) <= 15 and torch.equal(torch.log2(mags), torch.round(torch.log2(mags)))
    if case == "mixed":
        bits = res.records["mixed_bits"]
        assert set(bits) == {"conv1", "conv2", "fc1", "fc2"} and set(bits.values()) <= {4, 8}
        sizes = {n: m.get_submodule(n).weight.numel() for n in bits}
        assert sum(sizes[n] * bits[n] for n in bits) <= 5.0 * sum(sizes.values())
        assert all(r.get_submodule(n).weight_quant.spec.bits == b for n, b in bits.items())


def test_dynamic_has_no_static_input_scale(lenet5):
    m, *_ = lenet5
    q = apply(m, DynamicConfig(), Context())
    for _, layer in quant_layers(q):
        assert layer.input_quant.dynamic


def test_kmeans_1d_matches_reference():
    g = torch.Generator().manual_seed(0)
    v = torch.cat([torch.randn(50, generator=g) - 3, torch.randn(50, generator=g) + 3])
    c, idx = kmeans_1d(v, 4, iters=100)
    # reference Lloyd with the same linear init, plain Python
    vals = v.double().tolist()
    cs = [min(vals) + (max(vals) - min(vals)) * i / 3 for i in range(4)]
    for _ in range(100):
        groups = [[] for _ in cs]
        for x in vals:
            groups[min(range(len(cs)), key=lambda j: (abs(x - cs[j]), j))].append(x)
        new = [sum(gr) / len(gr) if gr else cs[j] for j, gr in enumerate(groups)]
        if new == cs:
            break
        cs = new
    assert torch.allclose(c.double(), torch.tensor(cs, dtype=torch.float64), atol=1e-5)


def test_kmeans_pruned_layer_keeps_zeros_and_codebook_after_finetune(lenet5, tmp_path):
    m, calib, test, train = lenet5
    with torch.no_grad():
        w = m.fc1.weight
        w[w.abs() < w.abs().median()] = 0  # 50% pruned
    zeros = m.fc1.weight == 0
    cfg = KMeansConfig(bits=3)
    layers = share_weights(m, cfg)
    before = {n: codebook_of(p) for n, (p, _) in layers.items()}
    assert all(len(cb) <= 8 for cb in before.values())
    fit(m, train, TrainConfig(epochs=1, batch_size=64, lr=1e-3, max_steps_per_epoch=8), callbacks=[WeightSharing(layers)],
        progress=False)
    assert torch.equal(m.fc1.weight == 0, zeros)
    for n, (p, idx) in layers.items():
        cb = codebook_of(p)
        assert len(cb) <= 8
        assert not torch.equal(cb, before[n])  # the shared values were trained
        flat = p.detach().reshape(-1)
        for k in range(int(idx.max()) + 1):  # every cluster holds one value
            assert len(torch.unique(flat[idx == k])) == 1


def test_kmeans_layer_bits_sets_codebook_size_per_layer(lenet5):
    m = lenet5[0]
    share_weights(m, KMeansConfig(bits=5, layer_bits={"fc1": 2, "conv1": 3}))
    assert len(codebook_of(m.fc1.weight)) <= 4
    assert len(codebook_of(m.conv1.weight)) <= 8
    assert 8 < len(codebook_of(m.conv2.weight)) <= 32
    cfg = KMeansConfig(layer_bits={"fc1": 2})
    assert KMeansConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="fc9"):
        share_weights(m, KMeansConfig(layer_bits={"fc9": 2}))
    with pytest.raises(ConfigError, match="layer_bits"):
        KMeansConfig(layer_bits={"fc1": 9})


def test_choose_bits_respects_budget_and_prefers_insensitive_layers():
    sens = {"a": {2: 10.0, 4: 1.0, 8: 0.0}, "b": {2: 0.1, 4: 0.01, 8: 0.0}}
    sizes = {"a": 100, "b": 100}
    bits = choose_bits(sens, sizes, 5.0)
    assert bits == {"a": 8, "b": 2}
    bits = choose_bits(sens, sizes, 3.0)
    assert bits == {"a": 4, "b": 2}
    # a big layer's step overshoots the budget; the left-over goes to the small layer
    sens2 = {"big": {2: 1.0, 4: 0.5, 8: 0.0}, "small": {2: 5.0, 4: 1.0, 8: 0.0}}
    bits = choose_bits(sens2, {"big": 1000, "small": 10}, 3.0)
    assert bits == {"big": 2, "small": 8}


def test_mixed_hessian_traces_match_exact_hessian():
    from torchslim.quantize.mixed import hessian_traces

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    data = [(x, y)]
    est = hessian_traces(net, {"0": net[0]}, data, samples=400)
    w = net[0].weight

    def f(wf):
        return torch.nn.functional.cross_entropy(torch.nn.functional.linear(x, wf.reshape(2, 3), net[0].bias), y)

    H = torch.autograd.functional.hessian(f, w.detach().reshape(-1))
    assert est["0"] == pytest.approx(float(torch.trace(H)), rel=0.15)


def test_half_conversion_and_artifact(lenet5, tmp_path):
    m, calib, test, train = lenet5
    base = evaluate(m, test)["accuracy"]
    h = apply(copy.deepcopy(m), HalfConfig(dtype="bf16", finetune=SMALL_FT),
              Context(train_data=train, progress=False, stage_out=tmp_path / "s"))
    assert h.fc1.weight.dtype == torch.bfloat16
    assert evaluate(h, test)["accuracy"] >= base - 0.02
    path = torchslim.artifact.save(h, tmp_path / "h.safetensors")
    r = torchslim.artifact.load(path)
    assert r.fc1.weight.dtype == torch.float32 and torch.equal(r.fc1.weight, h.fc1.weight.float())
    assert path.stat().st_size < 0.6 * torchslim.artifact.save(m, tmp_path / "f.safetensors").stat().st_size


def test_qat_from_ptq_start_keeps_quantizers(lenet5, tmp_path):
    m, calib, test, train = lenet5
    ctx = Context(train_data=train, calib_data=calib, progress=False, stage_out=tmp_path / "s")
    q = apply(m, PTQConfig(weight_bits=4, num_batches=1), ctx)
    ids = [id(l.weight_quant) for _, l in quant_layers(q)]
    q = apply(q, QATConfig(finetune=SMALL_FT), ctx)
    assert [id(l.weight_quant) for _, l in quant_layers(q)] == ids
    assert all(isinstance(l.weight_quant.scale, torch.nn.Parameter) for _, l in quant_layers(q))


def test_kmeans_on_a_model_with_reversible_masks_shares_weights():
    """Pruning masks still attached (weight_orig/weight_mask) must not stop
    weight sharing: the masks are made permanent and zeros stay zero."""
    import torch.nn.utils.prune as tprune

    from torchslim.quantize import KMeansConfig, share_weights
    from torchslim.zoo import build_model

    m = build_model("lenet300", dataset="mnist")
    tprune.l1_unstructured(m.fc1, "weight", amount=0.9)
    zeros_before = int((m.fc1.weight == 0).sum())
    share_weights(m, KMeansConfig(bits=4))
    w = m.fc1.weight
    assert isinstance(w, torch.nn.Parameter) and not hasattr(m.fc1, "weight_mask")
    assert int((w == 0).sum()) == zeros_before
    assert len(torch.unique(w[w != 0])) <= 16


def test_kmeans_bias_bits_shares_biases_and_keeps_them_shared(lenet5):
    m, calib, test, train = lenet5
    with torch.no_grad():
        m.fc1.bias[:7] = 0  # e.g. biases of units removed by pruning
    layers = share_weights(m, KMeansConfig(bits=4, bias_bits=2))
    assert "fc1.bias" in layers and "conv2.bias" in layers
    fit(m, train, TrainConfig(epochs=1, batch_size=64, lr=1e-3, max_steps_per_epoch=4), callbacks=[WeightSharing(layers)],
        progress=False)
    for name in ("conv1", "conv2", "fc1", "fc2"):
        b = getattr(m, name).bias.detach()
        assert len(codebook_of(b)) <= 4, name
    assert not m.fc1.bias[:7].any()
    assert len(torch.unique(share_weights(m, KMeansConfig(bits=4))["fc1"][0].detach())) <= 17
    with pytest.raises(ConfigError, match="bias_bits"):
        KMeansConfig(bias_bits=0)
    with pytest.raises(ConfigError, match="iters"):
        KMeansConfig(iters=0)
