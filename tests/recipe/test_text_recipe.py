"""A sentence encoder from a Hugging Face folder, compressed by a recipe on a
sentence file: no labels, so the report measures fidelity to the baseline
(mean/min cosine, nearest-neighbour agreement) and accuracy is null."""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("transformers")

import torchslim  # noqa: E402
from torchslim.core.errors import DataError  # noqa: E402
from torchslim.recipe import run_recipe  # noqa: E402


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    from transformers import AutoModel, BertConfig

    d = tmp_path_factory.mktemp("enc")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
    AutoModel.from_config(cfg).save_pretrained(d / "model")
    words = "the quick brown fox jumps over a lazy dog while cats sleep in warm sunny rooms".split()
    g = torch.Generator().manual_seed(0)
    lines = [" ".join(words[int(i)] for i in torch.randint(0, len(words), (6,), generator=g)) for _ in range(80)]
    (d / "sentences.txt").write_text("\n".join(lines) + "\n")
    return d


def _recipe(d, stages):
    return {"name": "enc", "model": {"hf": str(d / "model")},
            "data": {"dataset": f"{d / 'sentences.txt'}?max_length=16", "holdout": 16},
            "measure": {"latency": False}, "stages": stages}


def test_sentence_encoder_recipe_reports_fidelity(encoder_dir, tmp_path):
    rep = run_recipe(_recipe(encoder_dir, [{"name": "prune", "kind": "prune.structured", "ratio": 0.4,
                                            "target": "macs"}]), tmp_path, progress=False)
    assert rep["baseline"]["accuracy"] is None and rep["final"]["accuracy"] is None
    assert rep["baseline"]["fidelity"]["mean_cosine"] == pytest.approx(1.0, abs=1e-6)
    fid = rep["final"]["fidelity"]
    assert 0.0 < fid["mean_cosine"] < 1.0 and 0.0 <= fid["nn_agreement"] <= 1.0 and fid["n"] > 0
    assert rep["final"]["macs"] < 0.7 * rep["baseline"]["macs"]
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["final"]["fidelity"] == fid
    model = torchslim.load(tmp_path / on_disk["artifact"])  # rebuilt offline from the recorded config
    assert model.encoder.layer[0].attention.self.query.out_features < 32


def test_training_on_sentences_is_a_clear_error(encoder_dir, tmp_path):
    with pytest.raises(DataError, match="training on sentences"):
        run_recipe(_recipe(encoder_dir, [{"name": "t", "kind": "train", "epochs": 1}]), tmp_path, progress=False)


def test_measure_robustness_puts_the_comparison_in_the_report(tmp_path):
    from torchslim.core.errors import ConfigError
    from torchslim.recipe import load_recipe

    recipe = {"name": "rob", "model": {"zoo": "lenet300", "kwargs": {"hidden": [32, 16]}},
              "data": {"dataset": "digits", "holdout": 100},
              "measure": {"latency": False, "robustness": True, "robustness_limit": 60,
                          "robustness_severities": [2]},
              "stages": [{"name": "prune", "kind": "prune.unstructured", "sparsity": 0.5}]}
    rep = run_recipe(recipe, tmp_path, progress=False)
    rob = rep["robustness"]
    assert rob["n"] == 60 and rob["severities"] == [2] and 0.0 <= rob["clean"]["agreement"] <= 1.0
    assert "robustness: final vs baseline" in (tmp_path / "report.html").read_text()
    with pytest.raises(ConfigError, match="robustness_limit"):
        load_recipe({**recipe, "measure": {"robustness": True, "robustness_limit": 0}})
