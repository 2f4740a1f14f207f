"""Dynamic int8 export vs a plain simulation of ONNX DynamicQuantizeLinear +
MatMulInteger written here: integer products are exact, so they agree to
float rounding."""
import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from .export_models import TokenMLP
from torchslim.export import OrtModel, to_onnx


def dql_reference(x):
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    s = (hi - lo) / 255
    z = float(np.clip(np.round(-lo / s), 0, 255))
    return (torch.clamp(torch.round(x / s) + z, 0, 255) - z) * s


def simulate(model, layers, x):
    mods = dict(model.named_modules())
    hooks = []
    for n in layers:
        w = mods[n].weight.detach()
        ws = w.abs().amax(1, keepdim=True) / 127
        wq = torch.round(w / ws) * ws
        hooks.append(mods[n].register_forward_hook(
            lambda mod, a, out, wq=wq: F.linear(dql_reference(a[0]), wq, mod.bias)))
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    return out


def _ops_after_ort(path, tmp_path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(tmp_path / "opt.onnx").graph.node]


def test_dynamic_matmul_graph_matches_simulation(tmp_path):
    model = TokenMLP().eval()
    x = torch.randn(3, 7, 24)
    path = to_onnx(model, tmp_path / "d.onnx", (x,), int8="dynamic")
    got = OrtModel(path)(x)
    torch.testing.assert_close(got, simulate(model, ["inp", "out"], x), atol=2e-5, rtol=1e-4)
    assert not torch.allclose(got, model(x), atol=1e-4)  # it really is quantized
    ops = _ops_after_ort(path, tmp_path)
    assert ops.count("DynamicQuantizeMatMul") == 2 and "MatMul" not in ops, ops
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert meta["torchslim.int8"] == "dynamic"


def test_dynamic_gemm_and_keep_float(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 5)).eval()
    x = torch.randn(8, 20)
    path = to_onnx(model, tmp_path / "d.onnx", (x,), int8="dynamic", keep_float=["2"])
    torch.testing.assert_close(OrtModel(path)(x), simulate(model, ["0"], x), atol=2e-5, rtol=1e-4)
    ops = _ops_after_ort(path, tmp_path)
    assert ops.count("DynamicQuantizeMatMul") == 1 and ops.count("Gemm") == 1, ops
    from torchslim.core import ConfigError

    with pytest.raises(ConfigError, match="unknown layers"):
        to_onnx(model, tmp_path / "e.onnx", (x,), int8="dynamic", keep_float=["fc9"])


def test_keep_float_count_is_chosen_on_calibration_data(tmp_path):
    from torchslim.export.sensitivity import dynamic_sensitivity

    torch.manual_seed(0)
    model = TokenMLP().eval()
    with torch.no_grad():  # an outlier feature makes the input of `out` hard to quantize per tensor
        model.inp.bias[3] = 40.0
    calib = [(torch.randn(4, 6, 24),) for _ in range(2)]
    gains = dynamic_sensitivity(model, calib)
    assert max(gains, key=gains.get) == "out"
    path = to_onnx(model, tmp_path / "d.onnx", calib[0], int8="dynamic", keep_float=1, calib=calib)
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert meta["torchslim.float_layers"] == '["out"]'


def test_smoothquant_matches_reference_and_helps_with_outlier_features(tmp_path):
    torch.manual_seed(0)
    model = TokenMLP().eval()

    def data(n):
        x = torch.randn(n, 6, 24)
        x[..., 5] *= 60.0  # an outlier feature, as in transformer activations
        return x

    calib = [(data(4),) for _ in range(3)]
    x = data(5)
    path = to_onnx(model, tmp_path / "s.onnx", (x,), int8="dynamic", smooth=0.5, calib=calib)
    got = OrtModel(path)(x)
    # reference: s = amax^a / wmax^(1-a) per input feature, only for widening layers (inp: 24 -> 48)
    amax = torch.stack([c[0].abs().reshape(-1, 24).amax(0) for c in calib]).amax(0)
    w = model.inp.weight.detach()
    s = amax ** 0.5 / w.abs().amax(0) ** 0.5
    ws = w * s
    wsc = ws.abs().amax(1, keepdim=True) / 127
    wq = torch.round(ws / wsc) * wsc
    with torch.no_grad():
        h = F.linear(dql_reference(x / s), wq, model.inp.bias)
        wo = model.out.weight
        oq = torch.round(wo / (wo.abs().amax(1, keepdim=True) / 127)) * (wo.abs().amax(1, keepdim=True) / 127)
        ref = model.norm(x + F.linear(dql_reference(model.act(h)), oq, model.out.bias))
    torch.testing.assert_close(got, ref, atol=5e-5, rtol=1e-4)
    plain = OrtModel(to_onnx(model, tmp_path / "p.onnx", (x,), int8="dynamic"))(x)
    with torch.no_grad():
        exact = model(x)
    assert (got - exact).abs().mean() < 0.5 * (plain - exact).abs().mean()


def test_vocabulary_table_is_stored_int8_per_row(tmp_path):
    from .export_models import TokenEncoder

    model = TokenEncoder().eval()
    ids = torch.randint(0, 2000, (3, 7))
    path = to_onnx(model, tmp_path / "e.onnx", (ids,), int8="dynamic")
    proto = onnx.load(path)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    assert inits["emb.weight_int8"].dtype == np.int8 and "emb.weight" not in inits
    table = model.emb.weight.detach()
    rs = table.abs().amax(1, keepdim=True) / 127
    emb = (torch.round(table / rs) * rs)[ids]
    with torch.no_grad():
        ref = F.linear(dql_reference(emb), torch.round(model.proj.weight / (model.proj.weight.abs().amax(1, keepdim=True) / 127))
                       * (model.proj.weight.abs().amax(1, keepdim=True) / 127), model.proj.bias)
    torch.testing.assert_close(OrtModel(path)(ids), ref, atol=2e-5, rtol=1e-4)
