"""Every registered pruning config round-trips (dict, JSON, YAML), rejects bad
values naming the field, and its handler runs through core.apply on digits;
the CLI verbs prune and sensitivity work end to end."""
import copy
import json

import pytest
import torch

from torchslim.core import ConfigError, Context, apply, apply_stage, config_class
from torchslim.prune import check_nm, is_masked, sparsity_report
from torchslim.train import TrainConfig

NAMES = ["prune.unstructured", "prune.nm", "prune.agp", "prune.lottery"]
EXAMPLES = {
    "prune.unstructured": dict(sparsity=0.8, criterion="taylor", ranking="layer", layer_sparsity={"fc3": 0.5},
                               scope={"exclude_names": ["fc1"]}, cycles=2,
                               finetune={"epochs": 1, "batch_size": 64, "lr": 1e-3}),
    "prune.nm": dict(n=4, m=8, criterion="obd_fisher", finetune=None),
    "prune.agp": dict(sparsity=0.85, start=0.1, end=0.6, frequency=3, layer_sparsity={"fc1": 0.9},
                      finetune={"epochs": 1, "batch_size": 64}),
    "prune.lottery": dict(rounds=2, rate=0.3, rewind_step=2, layer_rates={"fc3": 0.1},
                          finetune={"epochs": 1, "batch_size": 64}, reinit=True),
}


@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name):
    cls = config_class(name)
    for cfg in (cls(), cls.from_dict(EXAMPLES[name])):
        assert cls.from_dict(cfg.to_dict()) == cfg
        assert cls.from_json(cfg.to_json()) == cfg
        assert cls.from_yaml(cfg.to_yaml()) == cfg
        assert json.loads(cfg.to_json())  # plain data
    with pytest.raises(ConfigError, match="allowed fields"):
        cls.from_dict({"no_such_field": 1})


@pytest.mark.parametrize("name,bad,field", [
    ("prune.unstructured", {"sparsity": 1.5}, "sparsity"),
    ("prune.unstructured", {"criterion": "magic"}, "criterion"),
    ("prune.unstructured", {"allocate": "params", "layer_sparsity": {"fc1": 0.5}}, "either"),
    ("prune.nm", {"n": 5, "m": 4}, "n <= m"),
    ("prune.agp", {"start": 0.8, "end": 0.5}, "start"),
    ("prune.agp", {"criterion": "taylor"}, "criterion"),
    ("prune.lottery", {"rate": 1.0}, "rate"),
])
def test_bad_values_name_the_field(name, bad, field):
    with pytest.raises(ConfigError, match=field):
        config_class(name).from_dict(bad)


@pytest.fixture(scope="module")
def setup(digits):
    from torchslim.train import fit
    from torchslim.zoo import build_model, split_train

    train, test = digits
    tr, calib = split_train(train, 200)
    torch.manual_seed(0)
    model = build_model("lenet300", dataset="digits")
    fit(model, tr, TrainConfig(epochs=3, batch_size=64, lr=3e-3), progress=False)
    return model, tr.take(384), calib, test


def _ctx(setup, tmp_path):
    _, tr, calib, test = setup
    return Context(train_data=tr, calib_data=calib, stage_out=tmp_path, progress=False)


def test_unstructured_handler_iterative_with_data_criterion(setup, tmp_path):
    cfg = config_class("prune.unstructured").from_dict(EXAMPLES["prune.unstructured"])
    model = apply(copy.deepcopy(setup[0]), cfg, _ctx(setup, tmp_path))
    rep = sparsity_report(model)["layers"]
    assert rep["fc1"]["sparsity"] == 0.0 and not is_masked(model.fc1)  # excluded by the scope
    assert rep["fc2"]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert rep["fc3"]["sparsity"] == pytest.approx(0.5, abs=1e-2)
    assert (tmp_path / "cycle2" / "checkpoints" / "last.pt").exists()  # resumable fine-tuning in stage_out
    copy.deepcopy(model)  # a pruned, fine-tuned model can be copied by later stages


def test_unstructured_handler_allocation_and_permanent(setup, tmp_path):
    cfg = config_class("prune.unstructured")(sparsity=0.7, allocate="params", permanent=True)
    ctx = _ctx(setup, tmp_path)
    res = apply_stage(copy.deepcopy(setup[0]), cfg, ctx)
    model = res.model
    assert not is_masked(model.fc1)
    assert sparsity_report(model)["sparsity"] == pytest.approx(0.7, abs=2e-3)
    assert set(res.records["layer_sparsity"]) == {"fc1", "fc2", "fc3"} and "sensitivity" in res.records


def test_nm_agp_lottery_handlers(setup, tmp_path):
    ctx = _ctx(setup, tmp_path)
    m = apply(copy.deepcopy(setup[0]), config_class("prune.nm").from_dict(EXAMPLES["prune.nm"]), ctx)
    assert all(check_nm(getattr(m, n).weight, 4, 8) for n in ("fc1", "fc2", "fc3"))
    m = apply(copy.deepcopy(setup[0]), config_class("prune.agp").from_dict(EXAMPLES["prune.agp"]),
              _ctx(setup, tmp_path / "agp"))
    rep = sparsity_report(m)["layers"]
    assert rep["fc1"]["sparsity"] == pytest.approx(0.9, abs=1e-3)  # its own target; fc2+fc3 ranked together
    rest = [rep[n] for n in ("fc2", "fc3")]
    assert sum(r["sparsity"] * r["params"] for r in rest) / sum(r["params"] for r in rest) == pytest.approx(0.85, abs=1e-3)
    ctx = _ctx(setup, tmp_path / "lt")
    res = apply_stage(copy.deepcopy(setup[0]), config_class("prune.lottery").from_dict(EXAMPLES["prune.lottery"]), ctx)
    m = res.model
    assert [h["round"] for h in res.records["lottery_history"]] == [0, 1, 2]
    assert sparsity_report(m)["layers"]["fc1"]["sparsity"] == pytest.approx(1 - 0.7 ** 2, abs=1e-3)
    assert (tmp_path / "lt" / "reinit" / "checkpoints" / "last.pt").exists()
    with pytest.raises(Exception, match="train_data"):
        apply(copy.deepcopy(setup[0]), config_class("prune.agp")(), Context())


def test_cli_prune_and_sensitivity(setup, tmp_path, capsys):
    from torchslim.artifact import load, save
    from torchslim.cli import main

    dense = save(setup[0], tmp_path / "dense.safetensors")
    out = tmp_path / "pruned.safetensors"
    rc = main(["prune", str(dense), "--dataset", "digits", "--sparsity", "0.9", "--scope-exclude", "fc3",
               "--calib", "200", "--out", str(out), "--json", "--no-progress"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["sparsity"] == pytest.approx(0.9, abs=1e-3) and res["layers"]["fc3"] == 0.0
    assert res["size_bytes"] == out.stat().st_size < dense.stat().st_size / 3
    back = load(out)
    assert float((back.fc1.weight == 0).float().mean()) > 0.5
    rc = main(["prune", str(dense), "--dataset", "digits", "--nm", "2:4", "--calib", "200",
               "--out", str(tmp_path / "nm.safetensors"), "--json", "--no-progress"])
    assert rc == 0 and check_nm(load(tmp_path / "nm.safetensors").fc2.weight, 2, 4)
    capsys.readouterr()
    rc = main(["prune", str(dense), "--dataset", "digits", "--sparsity", "0.8", "--agp", "--finetune-epochs", "1",
               "--calib", "200", "--out", str(tmp_path / "agp.safetensors"), "--json", "--no-progress"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["config"]["name"] == "prune.agp" and res["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert (tmp_path / "agp.safetensors.work" / "agp" / "checkpoints" / "last.pt").exists()
    assert main(["prune", str(dense), "--dataset", "digits", "--nm", "24", "--out", str(out)]) == 2
    capsys.readouterr()
    rc = main(["sensitivity", str(dense), "--dataset", "digits", "--out", str(tmp_path / "sens"), "--calib", "200",
               "--sparsities", "0.5,0.9", "--target", "0.6", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["allocation"]) == {"fc1", "fc2", "fc3"}
    assert (tmp_path / "sens" / "sensitivity.png").exists() and (tmp_path / "sens" / "allocation.json").exists()
