"""The README's Python tour runs as written (with fewer epochs)."""
import re
from pathlib import Path


def test_readme_tour_runs(tmp_path, monkeypatch, capsys):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("epochs=10", "epochs=1").replace("epochs=2", "epochs=1")
    code = code.replace("TrainConfig(", "TrainConfig(max_steps_per_epoch=60, ")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.split("\n")
    assert out[0] == "266610 266200"
    assert 0.8 < float(out[1]) <= 1.0  # a real, briefly trained model
    assert float(out[3]) > 0.8  # the int8 ONNX model, evaluated in ONNX Runtime
