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


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start: end if end >= 0 else None]


def test_readme_own_model_section_runs(tmp_path, monkeypatch, capsys):
    """"Compress your own model": the Python block as written (it makes its own
    small Hugging Face folder and .npz in the working folder), then every
    command of the command-line block through the CLI."""
    import shlex

    from torchslim.cli import main

    text = _section((Path(__file__).resolve().parents[1] / "README.md").read_text(), "Compress your own model")
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.split("\n")
    assert out[0] == "0.5"  # half the MACs of the BERT
    assert float(out[1]) > 0.8  # the pruned, fine-tuned MLP on the .npz's test split
    commands = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(commands) == 4
    for line in commands:
        argv = shlex.split(line.split("#")[0])
        assert argv[0] == "torchslim"
        assert main(argv[1:]) == 0, line
    assert (tmp_path / "runs" / "mine-slim.safetensors").is_file()
