"""Static int8 QDQ export vs a plain fake-quant simulation written here.

Documented tolerance (torchslim/export/qdq.py): weight and input rounding are
identical by construction; int32 biases and the fixed-point requantization of
ORT's fused integer kernels can move a value on a rounding boundary by one
step, so logits agree to a small fraction of their range and classes to >= 99%.
"""
import json

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from .export_models import SmallCNN, TokenMLP
from torchslim.export import OrtModel, to_onnx


def minmax_reference(model, batches):
    """Plain min/max calibration: uint8 asymmetric inputs, int8 symmetric per-channel weights."""
    ranges = {}
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
    hooks = [m.register_forward_pre_hook(lambda mod, a, n=n: ranges.setdefault(n, []).append(
        (float(a[0].min()), float(a[0].max())))) for n, m in layers.items()]
    with torch.no_grad():
        for b in batches:
            model(b)
    for h in hooks:
        h.remove()
    params = {}
    for n, m in layers.items():
        lo = min(0.0, min(r[0] for r in ranges[n]))
        hi = max(0.0, max(r[1] for r in ranges[n]))
        s = (hi - lo) / 255
        z = int(min(max(round(-lo / s), 0), 255))
        w = m.weight.detach()
        ws = w.abs().reshape(w.shape[0], -1).amax(1) / 127
        params[n] = {"weight_scale": ws, "weight_zero_point": torch.zeros(len(ws), dtype=torch.int64),
                     "weight_bits": 8, "weight_axis": 0, "input_scale": s, "input_zero_point": z,
                     "input_bits": 8, "input_signed": False}
    return params


def simulate(model, params, x):
    """The fake-quant model: quantize each layer's input and weight, compute in float."""
    layers = dict(model.named_modules())
    hooks = []
    for n, p in params.items():
        m = layers[n]
        ws = p["weight_scale"].reshape(-1, *([1] * (m.weight.dim() - 1)))
        lo, hi = -(2 ** (p["weight_bits"] - 1)), 2 ** (p["weight_bits"] - 1) - 1
        wq = torch.clamp(torch.round(m.weight / ws), lo, hi) * ws

        def hook(mod, args, out, p=p, wq=wq):
            s, z = p["input_scale"], p["input_zero_point"]
            xq = (torch.clamp(torch.round(args[0] / s) + z, 0, 255) - z) * s
            if isinstance(mod, torch.nn.Conv2d):
                return F.conv2d(xq, wq, mod.bias, mod.stride, mod.padding)
            return F.linear(xq, wq, mod.bias)

        hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    return out


def _trained_cnn(mnist_small):
    torch.manual_seed(0)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    x = F.interpolate(mnist_small[0].x[:1024], size=14)
    y = mnist_small[0].y[:1024]
    for _ in range(3):
        for i in range(0, 1024, 128):
            opt.zero_grad()
            F.cross_entropy(model(x[i:i + 128]), y[i:i + 128]).backward()
            opt.step()
    return model.eval()


def test_static_qdq_matches_simulation(tmp_path, mnist_small):
    model = _trained_cnn(mnist_small)
    calib = [F.interpolate(mnist_small[0].x[1024 + i: 1024 + i + 128], size=14) for i in range(0, 512, 128)]
    params = minmax_reference(model, calib)
    x = F.interpolate(mnist_small[1].x[:500], size=14)
    path = to_onnx(model, tmp_path / "q.onnx", (x[:2],), int8="static", params=params)
    got = OrtModel(path)(x)
    sim = simulate(model, params, x)
    span = float(sim.abs().max())
    err = (got - sim).abs()
    assert float(err.max()) <= 0.05 * span, float(err.max()) / span
    assert float(err.mean()) <= 0.005 * span
    assert (got.argmax(1) == sim.argmax(1)).float().mean() >= 0.99
    # int8 weights on disk, smaller than the float file
    proto = onnx.load(path)
    q = {i.name: i for i in proto.graph.initializer}
    w = onnx.numpy_helper.to_array(q["conv2.weight_quantized"])
    assert w.dtype == np.int8
    ref = torch.clamp(torch.round(model.conv2.weight / params["conv2"]["weight_scale"].reshape(-1, 1, 1, 1)), -128, 127)
    np.testing.assert_array_equal(w, ref.detach().numpy().astype(np.int8))


def test_int8_files_are_smaller_on_disk(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256)).eval()
    calib = [torch.randn(32, 256)]
    sizes = {mode: to_onnx(model, tmp_path / f"{mode}.onnx", (calib[0][:1],), int8=mode, calib=calib).stat().st_size
             for mode in (None, "static", "dynamic")}
    assert sizes["static"] < 0.3 * sizes[None] and sizes["dynamic"] < 0.3 * sizes[None], sizes


def test_static_graph_runs_integer_kernels(tmp_path):
    import onnxruntime as ort

    model = SmallCNN().eval()
    calib = [torch.rand(16, 1, 14, 14) for _ in range(2)]
    path = to_onnx(model, tmp_path / "q.onnx", (calib[0][:1],), int8="static", calib=calib)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(tmp_path / "opt.onnx").graph.node]
    assert ops.count("QLinearConv") == 2 and "Conv" not in ops, ops
    assert ops.count("QGemm") == 2, ops


def test_static_matmul_per_channel_axis_and_low_bit_weights(tmp_path):
    model = TokenMLP().eval()
    calib = [torch.randn(4, 6, 24) for _ in range(2)]
    params = minmax_reference(model, calib)
    for p in params.values():  # 4-bit weights stored in int8 with the clamped range
        p["weight_bits"] = 4
        p["weight_scale"] = p["weight_scale"] * 127 / 7
    x = torch.randn(3, 6, 24)
    path = to_onnx(model, tmp_path / "q.onnx", (x,), int8="static", params=params)
    proto = onnx.load(path)
    w = onnx.numpy_helper.to_array({i.name: i for i in proto.graph.initializer}["inp.weight_quantized"])
    assert w.shape == (24, 48) and w.min() >= -8 and w.max() <= 7
    dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == "inp.weight_quantized"]
    assert [a.i for a in dq[0].attribute if a.name == "axis"] == [1]
    sim = simulate(model, params, x)
    torch.testing.assert_close(OrtModel(path)(x), sim, atol=2e-3, rtol=0)


def test_static_export_of_torchslim_ptq_model_matches_its_simulation(tmp_path, mnist_small):
    """The quantize -> export contract: the fake-quant model of torchslim.quantize
    and its ONNX Runtime int8 graph agree within the documented tolerance."""
    from torchslim.quantize.configs import PTQConfig
    from torchslim.quantize.ptq import quantize_static
    from torchslim.zoo import ArrayDataset

    model = _trained_cnn(mnist_small)
    x = F.interpolate(mnist_small[1].x[:500], size=14)
    calib = ArrayDataset(F.interpolate(mnist_small[0].x[1024:1536], size=14), mnist_small[0].y[1024:1536])
    qmodel = quantize_static(model, calib, PTQConfig(num_batches=4, batch_size=128))
    with torch.no_grad():
        sim = qmodel(x)
    path = to_onnx(qmodel, tmp_path / "q.onnx", (x[:2],), int8="static")
    got = OrtModel(path)(x)
    span = float(sim.abs().max())
    assert float((got - sim).abs().max()) <= 0.05 * span
    assert float((got - sim).abs().mean()) <= 0.005 * span
    assert (got.argmax(1) == sim.argmax(1)).float().mean() >= 0.99
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert set(json.loads(meta["torchslim.quantized_layers"])) == {"conv1", "conv2", "fc1", "fc2"}
