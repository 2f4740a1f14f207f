import copy

import pytest
import torch

import torchslim
from torchslim.analysis.evaluate import evaluate
from torchslim.core import Context, apply
from torchslim.quantize import (PTQConfig, QuantConv2d, QuantLinear, export_params, fold_batchnorm, quant_layers,
                                quantize_static)
from torchslim.quantize.kernels import quantize


def test_bn_folding_is_exact():
    from torchslim.zoo import build_model

    m = build_model("resnet8", dataset="mnist").eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.normal_()
            mod.running_var.uniform_(0.5, 2)
            mod.weight.data.normal_()
            mod.bias.data.normal_()
    x = torch.rand(3, 1, 28, 28)
    y = m(x)
    pairs = fold_batchnorm(m)
    assert len(pairs) >= 7 and not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in m.modules())
    assert torch.allclose(m(x), y, atol=1e-4)


def test_int8_ptq_keeps_accuracy_and_round_trips(lenet5, tmp_path):
    m, calib, test, _ = lenet5
    base = evaluate(m, test)["accuracy"]
    q = apply(m, PTQConfig(num_batches=2), Context(calib_data=calib))
    assert [type(l) for _, l in quant_layers(q)] == [QuantConv2d, QuantConv2d, QuantLinear, QuantLinear]
    acc = evaluate(q, test)["accuracy"]
    assert acc >= base - 0.01
    path = torchslim.artifact.save(q, tmp_path / "q.safetensors")
    r = torchslim.artifact.load(path)
    assert isinstance(r.fc1, QuantLinear) and r.fc1.input_quant is not None
    x = test.x[:50]
    assert torch.equal(r(x), q(x))


@pytest.mark.parametrize("method", ["gptq", "adaround"])
def test_gptq_and_adaround_reduce_layer_error(lenet5, method):
    m, calib, test, _ = lenet5
    cfg = PTQConfig(weight_bits=3, weight_method=method, num_batches=2, batch_size=64, adaround_iters=40)
    q = quantize_static(m, calib, cfg)
    rep = q.torchslim_quant_report
    assert set(rep) == {"conv1", "conv2", "fc1", "fc2"}
    for name, r in rep.items():
        before, after = (r["err_nearest"], r["err_gptq"]) if method == "gptq" else (r["mse_nearest"], r["mse_adaround"])
        assert after < before, (name, r)
    # the chosen weights sit exactly on the quantizer's grid
    for _, layer in quant_layers(q):
        assert torch.allclose(layer.quantized_weight(), layer.weight, atol=1e-6)


def test_export_params_contract(lenet5):
    m, calib, test, _ = lenet5
    q = quantize_static(m, calib, PTQConfig(num_batches=1, weight_bits=4, bias_correction=True))
    fm, params = export_params(q)
    assert set(params) == {"conv1", "conv2", "fc1", "fc2"}
    assert not quant_layers(fm) and type(fm.fc1) is torch.nn.Linear
    for name, p in params.items():
        layer = fm.get_submodule(name)
        assert p["weight_scale"].shape == (layer.weight.shape[0],) and p["weight_axis"] == 0
        assert p["weight_zero_point"].dtype == torch.int32 and p["weight_bits"] == 4
        assert isinstance(p["input_scale"], float) and not p["input_signed"] and 0 <= p["input_zero_point"] <= 255
        # re-quantizing the float weights with the scales gives the simulation's integers
        s = p["weight_scale"].reshape(-1, *([1] * (layer.weight.dim() - 1)))
        qi = quantize(layer.weight, s, torch.tensor(0), -8, 7)
        assert torch.allclose(qi * s, layer.weight, atol=1e-6)
    # float model + input QDQ with the params reproduces the simulation
    x = test.x[:64]
    hooks = []
    for name, p in params.items():
        def pre(mod, args, p=p):
            return (quantize(args[0], torch.tensor(p["input_scale"]), torch.tensor(p["input_zero_point"]), 0, 255)
                    - p["input_zero_point"]) * p["input_scale"]
        hooks.append(fm.get_submodule(name).register_forward_pre_hook(pre))
    assert torch.allclose(fm(x), q(x), atol=1e-5)


def test_ptq_config_round_trip_and_errors():
    from torchslim.core.errors import ConfigError, DataError

    c = PTQConfig(weight_bits=4, observer="kl", weight_method="adaround")
    assert PTQConfig.from_dict(c.to_dict()) == c and PTQConfig.from_yaml(c.to_yaml()) == c
    with pytest.raises(ConfigError, match="weight_bits"):
        PTQConfig(weight_bits=9)
    with pytest.raises(ConfigError, match="observer"):
        PTQConfig(observer="median")
    with pytest.raises(DataError, match="calib_data"):
        quantize_static(torch.nn.Linear(3, 3), None)


def test_bias_correction_removes_the_mean_output_shift(lenet5):
    from torchslim.quantize.calib import calib_batches, capture_inputs

    m, calib, test, _ = lenet5
    float_m = copy.deepcopy(m)
    q = quantize_static(m, calib, PTQConfig(weight_bits=3, num_batches=1, batch_size=128, bias_correction=True))
    batches = calib_batches(calib, num_batches=1, batch_size=128)
    for name in ("conv2", "fc1"):
        layer, ref = q.get_submodule(name), float_m.get_submodule(name)
        x = capture_inputs(q, layer, batches)
        with torch.no_grad():
            lq = layer._conv_forward(x, layer.quantized_weight(), layer.bias) if name == "conv2" else \
                torch.nn.functional.linear(x, layer.quantized_weight(), layer.bias)
            lf = ref(x)
        shift = (lf - lq).transpose(0, 1).reshape(lf.shape[1], -1).mean(1)
        assert shift.abs().max() < 1e-4, name
