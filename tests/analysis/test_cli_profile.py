"""torchslim profile MODEL [--input-shape] [--batch] [--latency] [--json]"""
import json

from torchslim.cli import main
from torchslim.zoo import build_model


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_profile_zoo_json_must_show(capsys):
    d = _json(capsys, ["profile", "lenet300", "--json"])
    assert d["params"] == 266_610 and d["macs"] == 266_200
    assert d["fp32_bytes"] == 4 * 266_610 and d["size_bytes"] is None and d["uncounted"] == []
    assert [lp["name"] for lp in d["layers"]][:4] == ["norm", "flatten", "fc1", "relu1"]
    d = _json(capsys, ["profile", "lenet5", "--dataset", "mnist", "--json"])
    assert d["params"] == 431_080 and d["macs"] == 2_293_000
    assert {"pool1", "pool2", "relu"} <= {lp["name"] for lp in d["layers"] if lp["macs"] == 0 and lp["flops"] > 0}


def test_profile_artifact_has_file_size(tmp_path, capsys):
    import torchslim

    path = tmp_path / "lenet5.safetensors"
    torchslim.save(build_model("lenet5", dataset="mnist"), path)
    d = _json(capsys, ["profile", str(path), "--json", "--batch", "2"])
    assert d["size_bytes"] == path.stat().st_size
    assert d["macs"] == 2 * 2_293_000 and d["input_shapes"] == [[2, 1, 28, 28]]


def test_profile_input_shape_table_and_latency(capsys):
    assert main(["profile", "lenet300", "--input-shape", "3,784", "--latency", "--repeats", "3"]) == 0
    out = capsys.readouterr().out
    assert "fc1" in out and "798,600" in out and "latency median ms" in out  # 3 * 266,200 MACs
    d = _json(capsys, ["profile", "mlp", "--input-shape", "1,1,28,28", "--batch", "4", "--latency", "--repeats", "3",
                       "--json"])
    assert d["input_shapes"] == [[4, 1, 28, 28]]
    assert d["latency"]["batch_size"] == 4 and d["latency"]["median_ms"] > 0 and d["latency"]["threads"] >= 1


def test_profile_bad_shape_is_a_clear_error(capsys):
    assert main(["profile", "lenet300", "--input-shape", "a,b"]) == 2
    assert "--input-shape" in capsys.readouterr().err
    assert main(["profile", "lenet300", "--input-shape", "1,100"]) == 2
    assert "fc1" in capsys.readouterr().err


def test_profile_minilm_token_inputs(capsys, minilm_model, monkeypatch):
    import torchslim.cli.common as common

    monkeypatch.setattr(common, "load_model", lambda spec, dataset=None: minilm_model)  # reuse the loaded model
    d = _json(capsys, ["profile", "minilm", "--input-shape", "1,6", "--json"])
    assert d["input_shapes"] == [[1, 6], [1, 6]]
    from torchslim.analysis import profile

    assert d["macs"] == profile(minilm_model, minilm_model.example_inputs(1, 6)).macs > 0
    assert d["uncounted"] == []
    assert d["params"] == sum(p.numel() for p in minilm_model.parameters())
