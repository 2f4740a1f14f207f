import json

import pytest
import torch

from torchslim.core import Context, apply_stage, config_class
from torchslim.core.errors import ConfigError
from torchslim.export import ExportOnnxConfig, OrtModel, to_onnx


def test_ort_model_evaluates_like_the_torch_model(tmp_path, digits):
    from torchslim.analysis.evaluate import evaluate
    from torchslim.zoo import build_model

    train, test = digits
    model = build_model("lenet300", dataset="digits").eval()
    path = to_onnx(model, tmp_path / "m.onnx", (test.x[:2],))
    ort_model = OrtModel(path, threads=1)
    assert ort_model.threads == 1 and ort_model.input_names == ["input"]
    a, b = evaluate(model, test), evaluate(ort_model, test)
    assert a["accuracy"] == b["accuracy"] and a["confusion_matrix"] == b["confusion_matrix"]
    with pytest.raises(TypeError, match="takes 1 inputs"):
        ort_model(test.x[:2], test.x[:2])


def test_latency_measures_the_ort_model(tmp_path):
    from torchslim.analysis.latency import latency

    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU()).eval()
    x = torch.randn(8, 64)
    r = latency(OrtModel(to_onnx(model, tmp_path / "m.onnx", (x,))), (x,), warmup=1, repeats=3)
    assert r["median_ms"] > 0


def test_export_config_round_trip_and_validation():
    cfg = ExportOnnxConfig(file="q.onnx", int8="dynamic", keep_float=2)
    assert config_class("export.onnx") is ExportOnnxConfig
    assert ExportOnnxConfig.from_dict(cfg.to_dict()) == cfg
    assert ExportOnnxConfig.from_yaml(cfg.to_yaml()) == cfg
    with pytest.raises(ConfigError, match="int8"):
        ExportOnnxConfig(int8="int4")
    with pytest.raises(ConfigError, match="unknown field"):
        ExportOnnxConfig.from_dict({"int9": "static"})


def test_export_stage_writes_the_file_and_keeps_the_model(tmp_path, digits):
    from torchslim.zoo import build_model

    train, test = digits
    model = build_model("lenet300", dataset="digits").eval()
    ctx = Context(calib_data=train.take(256), example_inputs=(test.x[:2],), out_dir=tmp_path)
    ctx.stage_out = tmp_path / "stage"
    res = apply_stage(model, ExportOnnxConfig(file="m8.onnx", int8="static", calib_batches=2, batch_size=128), ctx)
    assert res.model is model
    path = res.records["onnx"]
    assert path.endswith("stage/m8.onnx")
    got = OrtModel(path)(test.x)
    with torch.no_grad():
        assert (got.argmax(1) == model(test.x).argmax(1)).float().mean() > 0.95


def test_cli_export_and_bench(tmp_path, capsys):
    from torchslim.cli import main

    out = tmp_path / "l5.onnx"
    assert main(["export", "lenet300", "--dataset", "digits", "--int8", "dynamic", "--out", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["size_bytes"] == out.stat().st_size and rep["quantized_layers"] == 3
    assert rep["max_abs_diff_vs_torch"] < 0.1
    assert main(["bench", str(out), "--dataset", "digits", "--batch", "4", "--repeats", "3", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["median_ms"] > 0 and rep["runtime"].startswith("onnxruntime")
    assert main(["bench", str(out), "--against", "lenet300", "--dataset", "digits", "--batch", "4",
                 "--repeats", "3", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["speedup_vs_against"] > 0 and rep["against_runtime"].startswith("torch")
