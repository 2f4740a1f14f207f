"""profile(): counts from a real forward pass, checked against torch's FlopCounterMode
(see conftest.flop_counter) and against hand formulas."""
import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize, prune

from torchslim.analysis import Profile, profile
from torchslim.core.errors import ModelError
from torchslim.zoo import build_model, example_inputs

ZOO = ["lenet300", "lenet5", "mlp", "resnet8", "mobilenetv2", "vit"]


def _check_against_oracle(model, inputs, oracle, *, kwargs=None):
    """2 * MACs equals FlopCounterMode's total, and for every module FlopCounterMode reports,
    the MACs of the profile rows at or under that module agree too."""
    p = profile(model, kwargs if kwargs is not None else inputs)
    total, per_module = oracle(model, inputs if kwargs is None else (), kwargs=kwargs)
    assert total > 0
    assert 2 * p.macs == total
    root = type(model).__name__
    checked = 0
    for fc_name, fc_flops in per_module.items():
        if fc_name == "Global":
            continue
        name = fc_name[len(root) + 1:] if fc_name != root else ""
        mine = sum(lp.macs for lp in p.layers
                   if name == "" or lp.name == name or lp.name.startswith(name + "."))
        assert 2 * mine == fc_flops, f"module {name!r}: profile {2 * mine} vs FlopCounterMode {fc_flops}"
        checked += 1
    assert checked >= 2
    return p


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_matches_flop_counter(name, oracle):
    model = build_model(name, dataset="mnist")
    p = _check_against_oracle(model, example_inputs(model, "mnist"), oracle)
    assert p.params == sum(q.numel() for q in model.parameters())
    assert sum(lp.params for lp in p.layers) == p.params  # every parameter in exactly one row
    assert p.fp32_bytes == 4 * p.params
    assert p.uncounted == []


@pytest.mark.parametrize("impl,kind", [("sdpa", "attention"), ("eager", "matmul")])
def test_minilm_matches_flop_counter_with_both_attention_implementations(minilm_model, oracle, impl, kind):
    model = minilm_model
    cfg = model.bert.config
    before = cfg._attn_implementation
    cfg._attn_implementation = impl
    try:
        ids, mask = model.example_inputs(2, 8)
        p = _check_against_oracle(model, (ids, mask), oracle)
    finally:
        cfg._attn_implementation = before
    attn = p.layer("bert.encoder.layer.0.attention.self")
    # QK^T and AV of 12 heads of width 32 over 8 tokens, batch 2, counted in the module's own code
    assert attn.macs == 2 * 12 * 8 * 8 * (32 + 32)
    assert kind in attn.kinds and attn.kinds["softmax"] == 3 * 2 * 12 * 8 * 8
    assert p.layer("bert.embeddings.word_embeddings").macs == 0
    assert p.layer("bert.embeddings.word_embeddings").params == 30522 * 384
    assert p.params == sum(q.numel() for q in model.parameters())
    assert p.uncounted == []


def test_minilm_keyword_inputs(minilm_model, oracle):
    ids, mask = minilm_model.example_inputs(1, 6)
    _check_against_oracle(minilm_model, None, oracle, kwargs={"input_ids": ids, "attention_mask": mask})


def test_lenet300_must_show():
    model = build_model("lenet300", dataset="mnist")
    p = profile(model, torch.rand(1, 784))
    assert p.params == 266_610 and p.macs == 266_200
    assert p.layer("relu1").macs == 0 and p.layer("relu1").flops == 300  # activation: own line, not in MACs
    assert p.layer("fc1").macs == 784 * 300 and p.layer("fc1").output_shape == [1, 300]
    d = p.to_dict()
    for key in ("params", "nonzero_params", "macs", "flops", "fp32_bytes", "size_bytes", "uncounted", "layers"):
        assert key in d
    assert {"name", "type", "params", "nonzero", "macs", "flops", "output_shape"} <= set(d["layers"][0])
    json.dumps(d)


def test_lenet5_must_show():
    model = build_model("lenet5", dataset="mnist")
    p = profile(model, torch.rand(1, 1, 28, 28))
    assert p.params == 431_080 and p.macs == 2_293_000
    pool = p.layer("pool1")
    assert pool.macs == 0 and pool.flops == 20 * 12 * 12 * 4  # 2x2 max over each output
    assert p.layer("conv1").macs == 20 * 24 * 24 * 25
    assert p.flops > 2 * p.macs  # pooling, activation, normalisation are in FLOPs only


def test_batch_scales_macs():
    model = build_model("lenet5", dataset="mnist")
    assert profile(model, torch.rand(4, 1, 28, 28)).macs == 4 * 2_293_000


def _conv_reference_macs(x_shape, conv: nn.Conv2d | nn.Conv1d) -> int:
    """Plain formula: output size per spatial dim, then Cout * prod(out) * Cin/groups * prod(kernel)."""
    n, spatial = x_shape[0], x_shape[2:]
    out = []
    for i, s in enumerate(spatial):
        k, st, pad, dil = conv.kernel_size[i], conv.stride[i], conv.padding[i], conv.dilation[i]
        out.append((s + 2 * pad - dil * (k - 1) - 1) // st + 1)
    return n * conv.out_channels * math.prod(out) * (conv.in_channels // conv.groups) * math.prod(conv.kernel_size)


@pytest.mark.parametrize("kw", [
    dict(in_channels=4, out_channels=8, kernel_size=3),
    dict(in_channels=4, out_channels=8, kernel_size=3, stride=2, padding=1),
    dict(in_channels=8, out_channels=8, kernel_size=3, groups=8, padding=1),  # depthwise
    dict(in_channels=8, out_channels=12, kernel_size=(3, 5), groups=4, dilation=(2, 1), stride=(1, 2), padding=(2, 0)),
    dict(in_channels=6, out_channels=4, kernel_size=1, bias=False),
])
def test_conv2d_variants(kw, oracle):
    conv = nn.Conv2d(**kw)
    x = torch.randn(2, kw["in_channels"], 11, 13)
    p = _check_against_oracle(nn.Sequential(conv), (x,), oracle)
    assert p.macs == _conv_reference_macs(x.shape, conv)
    assert p.layers[0].params == sum(q.numel() for q in conv.parameters())


@pytest.mark.parametrize("kw", [dict(kernel_size=5), dict(kernel_size=3, stride=2, padding=2, dilation=3, groups=2)])
def test_conv1d(kw, oracle):
    conv = nn.Conv1d(4, 6, **kw)
    x = torch.randn(3, 4, 40)
    p = _check_against_oracle(nn.Sequential(conv), (x,), oracle)
    assert p.macs == _conv_reference_macs(x.shape, conv)


def test_conv_transpose(oracle):
    _check_against_oracle(nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)), (torch.randn(2, 4, 5, 5),), oracle)


class FunctionalNet(nn.Module):
    """Matmul-type work done by functions in a module's own code, not by leaf layers."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(12, 16))
        self.kernel = nn.Parameter(torch.randn(6, 3, 3, 3))
        self.head = nn.Linear(12, 4)

    def forward(self, x, tokens):
        y = F.conv2d(x, self.kernel, padding=1, stride=2)          # conv
        y = F.relu(y).flatten(1)
        a = tokens @ self.w                                          # (2, 5, 16)
        b = torch.bmm(a, a.transpose(1, 2))                          # (2, 5, 5)
        c = torch.matmul(b.softmax(-1), a)                           # (2, 5, 16)
        d = torch.einsum("bij,bjk->bik", b, c)
        e = F.linear(d.mean(1), self.w) + torch.mm(tokens[:, 0], self.w).sum() * y.sum()
        q = a.reshape(2, 5, 4, 4).transpose(1, 2)
        att = F.scaled_dot_product_attention(q, q, q)                # (2, 4, 5, 4)
        return self.head(e + att.sum((1, 2)).repeat(1, 3))


def test_functional_ops_in_module_code(oracle):
    net = FunctionalNet()
    x, tokens = torch.randn(2, 3, 8, 8), torch.randn(2, 5, 12)
    p = _check_against_oracle(net, (x, tokens), oracle)
    own = p.layer("")
    assert own.params == 16 * 12 + 6 * 27 and own.macs > 0 and own.uncounted is False
    expected_sdpa = 2 * 4 * 5 * 5 * (4 + 4)
    assert own.kinds["attention"] == 2 * expected_sdpa


class MHANet(nn.Module):
    def __init__(self, mha):
        super().__init__()
        self.mha = mha

    def forward(self, q, kv):
        return self.mha(q, kv, kv)[0]


@pytest.mark.parametrize("batch_first,kdim", [(True, None), (False, None), (True, 10)])
def test_multihead_attention(batch_first, kdim, oracle):
    mha = nn.MultiheadAttention(32, 4, batch_first=batch_first, kdim=kdim, vdim=kdim)
    L, S, N = 5, 7, 2
    kd = kdim or 32
    q = torch.randn(N, L, 32) if batch_first else torch.randn(L, N, 32)
    kv = torch.randn(N, S, kd) if batch_first else torch.randn(S, N, kd)
    net = MHANet(mha)
    p = profile(net, (q, kv))
    total, _ = oracle(net, (q, kv))
    assert 2 * p.macs == total
    hand = N * L * 32 * 32 + 2 * N * S * kd * 32 + 2 * N * L * S * 32 + N * L * 32 * 32
    assert p.macs == hand
    row = p.layer("mha")
    assert row.params == sum(x.numel() for x in mha.parameters())  # includes out_proj
    assert all(not lp.name.startswith("mha.") for lp in p.layers)  # out_proj is inside the counted layer
    assert row.kinds["softmax"] == 3 * N * 4 * L * S


class Sorter(nn.Module):
    def forward(self, x):
        return torch.sort(x, dim=-1).values


class Passthrough(nn.Module):
    def forward(self, x):
        return x


class WithUnknown(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.sorter = Sorter()
        self.passthrough = Passthrough()

    def forward(self, x):
        y = self.passthrough(self.sorter(self.fc(x)))
        return torch.fft.rfft(y).abs()  # unknown op in the model's own code


def test_unknown_leaf_is_listed_as_uncounted():
    p = profile(WithUnknown(), torch.randn(2, 8))
    assert set(p.uncounted) == {"sorter", "passthrough", ""}
    assert p.layer("sorter").uncounted and p.layer("sorter").uncounted_ops == ["sort"]
    assert "no torch function" in p.layer("passthrough").uncounted_ops[0]
    assert any("fft_rfft" in op for op in p.layer("").uncounted_ops)
    assert p.layer("fc").uncounted is False and p.macs == 2 * 8 * 8
    assert p.to_dict()["uncounted"] == p.uncounted


def test_pruned_model_nonzero_drops(oracle):
    model = build_model("lenet300", dataset="mnist")
    x = torch.rand(2, 784)
    dense = profile(model, x)
    prune.l1_unstructured(model.fc1, "weight", amount=0.5)
    prune.random_unstructured(model.fc2, "weight", amount=30)
    p = _check_against_oracle(model, (x,), oracle)
    zeros_fc1 = int((model.fc1.weight_mask == 0).sum())
    assert zeros_fc1 == round(0.5 * 784 * 300)
    assert p.params == dense.params  # weight_orig still holds every entry
    assert p.nonzero_params == dense.nonzero_params - zeros_fc1 - 30
    assert p.layer("fc1").nonzero == dense.layer("fc1").nonzero - zeros_fc1
    assert p.macs == dense.macs  # dense execution: masks do not remove MACs
    assert 0 < p.sparsity < 1


class _Mask(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w):
        return w * self.mask


def test_parametrized_mask_nonzero_drops():
    model = build_model("lenet5", dataset="mnist")
    dense = profile(model, torch.rand(1, 1, 28, 28))
    mask = (torch.rand_like(model.conv2.weight) > 0.25).float()
    parametrize.register_parametrization(model.conv2, "weight", _Mask(mask))
    p = profile(model, torch.rand(1, 1, 28, 28))
    assert p.params == dense.params and p.macs == dense.macs
    assert p.layer("conv2").nonzero == dense.layer("conv2").nonzero - int((mask == 0).sum())
    assert p.nonzero_params == dense.nonzero_params - int((mask == 0).sum())
    assert not any("parametrizations" in lp.name for lp in p.layers)


def test_structurally_changed_model(oracle):
    model = build_model("lenet5", dataset="mnist")
    # channel-pruned conv1 (20 -> 12) with conv2 reading 12 channels; low-rank fc1 (800 -> 40 -> 500)
    model.conv1 = nn.Conv2d(1, 12, 5)
    model.conv2 = nn.Conv2d(12, 50, 5)
    model.fc1 = nn.Sequential(nn.Linear(800, 40, bias=False), nn.Linear(40, 500))
    p = _check_against_oracle(model, (torch.rand(1, 1, 28, 28),), oracle)
    assert p.macs == 12 * 24 * 24 * 25 + 50 * 8 * 8 * 12 * 25 + 800 * 40 + 40 * 500 + 500 * 10
    assert p.params == sum(q.numel() for q in model.parameters())
    assert p.layer("fc1.0").output_shape == [1, 40]


def test_state_is_restored_and_batchnorm_untouched():
    model = build_model("resnet8", dataset="mnist")
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    profile(model, torch.rand(2, 1, 28, 28))
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_shared_module_and_tied_weights():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 6)
            self.act = nn.ReLU()
            self.out = nn.Linear(6, 6)
            self.out.weight = self.fc.weight

        def forward(self, x):
            return self.out(self.act(self.fc(self.act(self.fc(x)))))

    p = profile(Tied(), torch.randn(3, 6))
    assert p.layer("fc").calls == 2 and p.layer("fc").macs == 2 * 3 * 36
    assert p.layer("act").calls == 2
    assert p.params == 36 + 6 + 6  # the tied weight once
    assert p.macs == 3 * 3 * 36


def test_artifact_size_and_errors(tmp_path):
    import torchslim

    model = build_model("lenet300", dataset="mnist")
    path = tmp_path / "m.safetensors"
    torchslim.save(model, path)
    p = profile(model, torch.rand(1, 784), artifact_path=path)
    assert isinstance(p, Profile) and p.size_bytes == path.stat().st_size > 0
    assert profile(model, torch.rand(1, 784)).size_bytes is None
    with pytest.raises(ModelError, match="does not exist"):
        profile(model, torch.rand(1, 784), artifact_path=tmp_path / "missing.safetensors")
    with pytest.raises(ModelError, match="fc1"):
        profile(model, torch.rand(1, 100))
    with pytest.raises(ModelError, match="nn.Module"):
        profile(lambda x: x, torch.rand(1, 784))


def test_top_level_api():
    import torchslim

    assert torchslim.profile is profile
    assert torchslim.latency is torchslim.analysis.latency


class RNNNet(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]


@pytest.mark.parametrize("cls", [nn.GRU, nn.RNN])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_gru_rnn_match_flop_counter(cls, bidirectional, oracle):
    _check_against_oracle(RNNNet(cls(10, 16, num_layers=2, batch_first=True, bidirectional=bidirectional)),
                          (torch.randn(3, 7, 10),), oracle)


@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_lstm_hand_formula_and_packed_input():
    # FlopCounterMode does not see inside the fused LSTM kernel, so check the plain formula:
    # per step and direction, 4 gates of H units over (input + recurrent) features, plus the projection.
    lstm = nn.LSTM(10, 16, num_layers=2, bidirectional=True, proj_size=8)
    p = profile(RNNNet(lstm), torch.randn(7, 3, 10))
    steps, d = 7 * 3, 2
    layer0 = steps * d * (4 * 16 * (10 + 8) + 16 * 8)
    layer1 = steps * d * (4 * 16 * (d * 8 + 8) + 16 * 8)
    assert p.macs == layer0 + layer1 and p.uncounted == []
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(7, 3, 10), [7, 5, 2])
    p = profile(RNNNet(nn.GRU(10, 16)), (packed,))
    assert p.macs == (7 + 5 + 2) * 3 * 16 * (10 + 16)
