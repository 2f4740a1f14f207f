"""Bring your own model: the one resolver behind the Python API, the CLI and
recipes — zoo names, artifacts, run/train folders, factories, and a Hugging
Face model folder made here from a small BertConfig (offline)."""
from __future__ import annotations

import json
import os
import sys

import pytest
import torch

import torchslim
from torchslim.core.errors import ConfigError, ModelError
from torchslim.zoo import example_inputs
from torchslim.zoo.sources import check_hf_dir, load_model


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A tiny BERT (hidden 32, 2 layers, 2 heads, vocab 100) saved the Hugging
    Face way, with a word-piece tokenizer, plus a copy with a 3-class head."""
    from transformers import AutoModel, AutoModelForSequenceClassification, BertConfig, BertTokenizer

    root = tmp_path_factory.mktemp("hf")
    cfg = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=64)
    torch.manual_seed(0)
    AutoModel.from_config(BertConfig(**cfg)).save_pretrained(root / "bert")
    AutoModelForSequenceClassification.from_config(BertConfig(**cfg, num_labels=3)).save_pretrained(root / "cls")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + "the a cat dog sat on mat hello world here".split()
    (root / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(str(root / "vocab.txt")).save_pretrained(root / "bert")
    return root


def _artifact_rebuilds_hf() -> bool:
    """True once the artifact format rebuilds {"hf": ...} architectures (the lead's build_arch branch)."""
    from torchslim.artifact.format import build_arch

    try:
        build_arch({"hf": {"auto": "AutoModel", "config": {"model_type": "bert", "vocab_size": 10, "hidden_size": 8,
                                                            "num_hidden_layers": 1, "num_attention_heads": 2,
                                                            "intermediate_size": 8}}})
        return True
    except Exception:
        return False


# ---------------------------------------------------------------- Hugging Face folders
def test_hf_folder_loads_offline_and_records_how_to_rebuild(bert_dir, monkeypatch, tmp_path):
    import transformers

    seen = {}
    real = transformers.AutoModel.from_pretrained.__func__

    def spy(cls, *a, **kw):
        seen["offline"] = os.environ.get("HF_HUB_OFFLINE")
        return real(cls, *a, **kw)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", classmethod(spy))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model = torchslim.load_model(str(bert_dir / "bert"))
    assert seen["offline"] == "1" and "HF_HUB_OFFLINE" not in os.environ  # set while loading, restored after
    assert type(model).__name__ == "BertModel" and not model.training
    arch = model.torchslim_arch["hf"]
    assert arch["auto"] == "AutoModel" and arch["config"]["hidden_size"] == 32
    json.dumps(model.torchslim_arch)  # an artifact header can hold it
    ids, mask = example_inputs(model, batch=2)
    assert ids.shape == mask.shape == (2, 16) and int(ids.max()) < 100
    assert model(ids, mask).last_hidden_state.shape == (2, 16, 32)
    path = torchslim.save(model, tmp_path / "bert.safetensors")  # the artifact rebuilds it from the record
    back = torchslim.load(path)
    assert back.torchslim_arch["hf"]["auto"] == "AutoModel"
    assert torch.equal(back(ids, mask).last_hidden_state, model(ids, mask).last_hidden_state)


def test_hf_auto_class(bert_dir):
    with pytest.warns(UserWarning, match="without its head; pass auto="):
        bare = load_model(bert_dir / "cls")
    assert type(bare).__name__ == "BertModel"
    model = load_model(bert_dir / "cls", auto="AutoModelForSequenceClassification")
    assert model(torch.randint(3, 100, (2, 8))).logits.shape == (2, 3)
    assert model.torchslim_arch["hf"]["auto"] == "AutoModelForSequenceClassification"
    with pytest.raises(ModelError, match="unknown Auto class 'BertModel'"):
        load_model(bert_dir / "bert", auto="BertModel")
    with pytest.raises(ModelError, match="transformers has no Auto class 'AutoModelForTeaMaking'"):
        load_model(bert_dir / "bert", auto="AutoModelForTeaMaking")


def test_hf_folder_errors(tmp_path, bert_dir):
    with pytest.raises(ModelError, match="no such folder"):
        check_hf_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="has no config.json.*save_pretrained"):
        check_hf_dir(tmp_path / "empty")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text((bert_dir / "bert" / "config.json").read_text())
    with pytest.raises(ModelError, match="no weights"):
        load_model({"hf": str(tmp_path / "cfg")})


def test_cli_profile_and_eval_take_a_hf_folder(bert_dir, tmp_path, capsys):
    from torchslim.cli import main

    assert main(["profile", str(bert_dir / "bert"), "--json", "--input-shape", "2,8"]) == 0
    prof = json.loads(capsys.readouterr().out)
    params = sum(p.numel() for p in load_model(bert_dir / "bert").parameters())
    assert prof["params"] == params and prof["input_shapes"] == [[2, 8], [2, 8]]
    assert main(["profile", str(bert_dir / "cls"), "--auto", "AutoModelForSequenceClassification", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == params + 32 * 3 + 3  # plus the classifier
    # sentences tokenised by the folder's own tokenizer; a model against itself is perfectly faithful
    (tmp_path / "s.txt").write_text("the cat sat on the mat\nhello world\nthe dog sat here\na cat\n")
    assert main(["eval", str(bert_dir / "bert"), "--dataset", str(tmp_path / "s.txt"), "--reference",
                 str(bert_dir / "bert"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["n"] == 4 and m["min_cosine"] > 0.9999 and m["nn_agreement"] == 1.0
    assert main(["eval", str(bert_dir / "bert"), "--dataset", str(tmp_path / "s.txt")]) == 2
    assert "give --reference MODEL" in capsys.readouterr().err


def test_recipe_model_hf(bert_dir, tmp_path):
    from torchslim.recipe.runner import _build_model
    from torchslim.recipe.schema import load_recipe

    base = {"data": {"dataset": "digits", "holdout": 100}, "stages": [{"kind": "train", "epochs": 1}]}
    r = load_recipe({**base, "model": {"hf": str(bert_dir / "cls"), "auto": "AutoModelForSequenceClassification"}})
    model = _build_model(r.model, r.data.dataset)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert load_recipe({**base, "model": str(bert_dir / "bert")}).model.hf == str(bert_dir / "bert")  # shorthand
    assert load_recipe(r.to_dict()).model == r.model
    for model_spec, match in [
        ({"hf": str(tmp_path / "nope")}, "model.hf: no such folder"),
        ({"hf": str(tmp_path)}, "model.hf: .* has no config.json"),
        ({"hf": str(bert_dir / "bert"), "auto": "AutoTeapot"}, "model.auto: unknown Auto class 'AutoTeapot'"),
        ({"zoo": "mlp", "auto": "AutoModel"}, "model.auto: only used with model.hf"),
        ({"zoo": "mlp", "hf": str(bert_dir / "bert")}, "give exactly one of zoo, artifact, import_path, hf"),
    ]:
        with pytest.raises(ConfigError, match=match):
            load_recipe({**base, "model": model_spec})


@pytest.mark.skipif(not _artifact_rebuilds_hf(), reason="the artifact's 'hf' rebuild (artifact/format.build_arch) "
                                                        "has not landed yet")
def test_recipe_runs_a_hf_classifier_on_token_ids(bert_dir, tmp_path):
    import numpy as np

    from torchslim.recipe import run_recipe

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "tok.npz", x=rng.integers(3, 100, (60, 8)), y=np.arange(60) % 3)
    recipe = {"model": {"hf": str(bert_dir / "cls"), "auto": "AutoModelForSequenceClassification"},
              "data": {"dataset": {"path": str(tmp_path / "tok.npz"), "dtype": "int64"}, "holdout": 8},
              "measure": {"latency": False},
              "stages": [{"kind": "train", "epochs": 1, "batch_size": 16}]}
    report = run_recipe(recipe, tmp_path / "run", progress=False, html=False)
    assert 0.0 <= report["final"]["accuracy"] <= 1.0
    assert type(torchslim.load(tmp_path / "run" / "model.safetensors")).__name__ == "BertForSequenceClassification"


# ---------------------------------------------------------------- factories, zoo, artifacts, folders
_MODULE = '''
import torch.nn as nn

class Net(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.fc = nn.Linear(3, width)
    def forward(self, x):
        return self.fc(x)

def make(width=5):
    return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 2))

def not_a_model():
    return 42
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_models_mod.py").write_text(_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_models_mod"
    sys.modules.pop("my_models_mod", None)


def test_factories_and_their_artifacts(user_module, tmp_path):
    net = load_model(f"{user_module}:Net", width=6)
    assert net.fc.out_features == 6 and net.torchslim_arch == {"class": f"{user_module}:Net", "kwargs": {"width": 6}}
    seq = load_model({"import_path": f"{user_module}:make", "kwargs": {"width": 7}})
    assert seq[0].out_features == 7
    path = torchslim.save(seq, tmp_path / "seq.safetensors")
    back = load_model(str(path))  # a function is called again to rebuild
    x = torch.rand(2, 3)
    assert torch.equal(back(x), seq.eval()(x))
    with pytest.raises(ModelError, match="returned int, not a torch.nn.Module"):
        load_model(f"{user_module}:not_a_model")
    with pytest.raises(ModelError, match="has no 'Missing'"):
        load_model(f"{user_module}:Missing")
    with pytest.raises(ModelError, match="cannot import module 'no_such_mod_xyz'"):
        load_model("no_such_mod_xyz:Net")
    with pytest.raises(ModelError, match="calling it with .* failed"):
        load_model(f"{user_module}:Net", depth=3)


def test_zoo_artifacts_and_output_folders(tmp_path):
    m = load_model("mlp", dataset="digits", hidden=[8])
    assert m.torchslim_arch["zoo"] == "mlp" and m[-1].out_features == 10
    (tmp_path / "train").mkdir()
    torchslim.save(m, tmp_path / "train" / "model.safetensors")
    assert isinstance(load_model(str(tmp_path / "train")), torch.nn.Sequential)  # a `torchslim train` folder
    run = tmp_path / "run"
    (run / "stages").mkdir(parents=True)
    torchslim.save(m, run / "stages" / "final.safetensors")
    (run / "report.json").write_text(json.dumps({"artifact": "stages/final.safetensors"}))
    assert isinstance(load_model(str(run)), torch.nn.Sequential)  # a `torchslim run` folder
    assert load_model(m) is m
    with pytest.raises(ModelError, match="neither a zoo model"):
        load_model("lenet301")
    with pytest.raises(ModelError, match="a folder with neither config.json"):
        load_model(str(tmp_path / "run" / "stages"))
