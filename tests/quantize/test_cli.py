import json

import pytest
import torch

import torchslim
from torchslim.cli import main


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory, digits):
    from torchslim.train import TrainConfig, fit
    from torchslim.zoo import build_model

    torch.manual_seed(0)
    m = build_model("lenet300", dataset="digits")
    fit(m, digits[0], TrainConfig(epochs=3, batch_size=64, lr=3e-3), progress=False)
    return torchslim.artifact.save(m, tmp_path_factory.mktemp("cli") / "m.safetensors")


@pytest.mark.parametrize("method,extra", [("ptq", ["--observer", "percentile"]), ("weight-only", ["--bits", "4"]),
                                          ("kmeans", ["--bits", "4", "--epochs", "1"])])
def test_quantize_cli_writes_artifact_eval_reads(digits_model, tmp_path, capsys, method, extra):
    out = tmp_path / "q.safetensors"
    rc = main(["quantize", str(digits_model), "--dataset", "digits", "--method", method, "--calib", "256",
               "--out", str(out), "--json", "--no-progress", "--lr", "1e-4", *extra])
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    assert s["accuracy_after"] >= s["accuracy_before"] - 0.03 and out.exists()
    assert main(["eval", str(out), "--dataset", "digits", "--json"]) == 0
    e = json.loads(capsys.readouterr().out)
    assert e["accuracy"] == pytest.approx(s["accuracy_after"])


def test_artifact_loads_in_a_fresh_process_without_importing_quantize(digits_model, tmp_path):
    """`torchslim eval` alone (no torchslim.quantize import) must rebuild Quant* layers."""
    import subprocess
    import sys

    out = tmp_path / "q.safetensors"
    assert main(["quantize", str(digits_model), "--dataset", "digits", "--method", "dynamic", "--out", str(out),
                 "--json", "--no-progress"]) == 0
    code = ("import sys, torch; from torchslim.artifact import load; m = load(sys.argv[1]); "
            "print(type(m.fc1).__name__, m.fc1.input_quant.dynamic)")
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["QuantLinear", "True"]
