"""End to end on digits with tiny stages: the contract of report.json, the
final artifact measured alone, resume after a kill (between stages and inside
a stage), overrides that rerun only the changed stages, the CLI."""
import json
import re
from pathlib import Path

import pytest
import torch

from . import recipe_test_stages  # noqa: F401  (registers test.* configs)
from torchslim.analysis.evaluate import evaluate
from torchslim.artifact import load
from torchslim.recipe import load_recipe, run_recipe
from torchslim.report import CONTRACT_KEYS
from torchslim.zoo import load_dataset


def recipe(**extra_stage):
    return {
        "name": "tiny",
        "model": {"zoo": "lenet300", "kwargs": {"hidden": [48, 24]}},
        "data": {"dataset": "digits", "holdout": 200},
        "baseline": "dense",
        "measure": {"latency": False},
        "stages": [
            {"name": "dense", "kind": "train", "epochs": 3, "lr": 0.01, "batch_size": 64},
            {"name": "zero", "kind": "test.zero_small", "fraction": 0.8, **extra_stage},
        ],
    }


def test_end_to_end_contract_and_html(tmp_path):
    r = recipe()
    r["measure"] = {"latency": True, "repeats": 5, "warmup": 1}
    out = tmp_path / "run"
    report = run_recipe(r, out, progress=False)
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report, default=str))
    for part in ("baseline", "final"):
        for k in CONTRACT_KEYS:
            assert report[part][k] is not None, (part, k)
        assert 0.0 <= report[part]["accuracy"] <= 1.0
    art = out / report["artifact"]
    assert art.is_file() and not Path(report["artifact"]).is_absolute()
    assert report["final"]["size_bytes"] == art.stat().st_size
    assert report["baseline"]["size_bytes"] == (out / "baseline.safetensors").stat().st_size
    params = report["baseline"]["params"]
    assert params == sum(p.numel() for p in load(out / "baseline.safetensors").parameters())
    assert report["baseline"]["size_bytes"] >= 4 * params  # the dense file holds every fp32 weight
    assert report["compression_ratio"] == pytest.approx(4 * params / art.stat().st_size)
    assert report["compression_ratio"] > 1.5  # 80% of the Linear weights are zero and stored sparse
    assert report["speedup"] == pytest.approx(report["baseline"]["latency_ms"] / report["final"]["latency_ms"])
    # the artifact alone reproduces the reported accuracy
    test = load_dataset("digits", "test")
    assert evaluate(load(art), test)["accuracy"] == report["final"]["accuracy"]
    assert report["baseline"]["accuracy"] > 0.8
    # the selection split (data.holdout, taken from train) is measured too, so
    # settings can be chosen without looking at the test split
    from torchslim.zoo import split_train

    _, hold = split_train(load_dataset("digits", "train"), 200, seed=0)
    assert report["final"]["holdout_accuracy"] == evaluate(load(art), hold)["accuracy"]
    assert all("holdout_accuracy" in s["metrics"] for s in report["stages"])
    assert report["baseline"]["holdout_accuracy"] > 0.8
    # sparsity is real: 80% of every Linear weight is zero
    lin = [l for l in report["final"]["layers"] if l["type"] == "Linear"]
    assert all(l["sparsity"] >= 0.8 - 1e-3 for l in lin)
    assert report["final"]["nonzero_params"] < 0.3 * params
    assert [s["name"] for s in report["stages"]] == ["dense", "zero"]
    assert report["stages"][1]["extras"]["zeroed"] == 0.8
    # the resolved recipe is saved beside the results and reads back equal
    assert load_recipe(out / "recipe.yaml") == load_recipe({**r, "name": "tiny"})
    # the HTML is self-contained: inline PNGs, no scripts, no external links
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 4
    assert not re.search(r"<script|<link|https?://|src=\"(?!data:)", page)
    assert "accuracy vs size" in page and "sensitivity" in page and "zero" in page


def _weights(path):
    return {k: v.clone() for k, v in load(path).state_dict().items()}


def test_resume_after_a_failed_stage_does_not_redo_work(tmp_path):
    ref = run_recipe(recipe(), tmp_path / "ref", progress=False)
    out = tmp_path / "run"
    flag = tmp_path / "flag"
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_recipe(recipe(fail_once_flag=str(flag)), out, progress=False)
    dense_json = (out / "stages/0-dense/stage.json").read_bytes()
    assert not (out / "report.json").exists()
    report = run_recipe(recipe(fail_once_flag=str(flag)), out, progress=False)
    assert (out / "stages/0-dense/stage.json").read_bytes() == dense_json  # not rerun
    assert report["final"]["accuracy"] == ref["final"]["accuracy"]
    a, b = _weights(out / report["artifact"]), _weights(tmp_path / "ref" / ref["artifact"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a third run finds everything done
    report3 = run_recipe(recipe(fail_once_flag=str(flag)), out, progress=False)
    assert (out / "stages/1-zero/stage.json").read_bytes() and report3["final"] == report["final"]


def test_resume_inside_a_stage_continues_from_the_last_epoch(tmp_path):
    def r(**kw):
        x = recipe()
        x["stages"][1] = {"name": "ft", "kind": "test.finetune", **kw}
        return x

    ref = run_recipe(r(), tmp_path / "ref", progress=False)
    flag = tmp_path / "flag"
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_recipe(r(kill_at_epoch=2, flag=str(flag)), out, progress=False)
    assert (out / "stages/1-ft/checkpoints/last.pt").is_file()
    report = run_recipe(r(kill_at_epoch=2, flag=str(flag)), out, progress=False)
    extras = report["stages"][1]["extras"]
    assert extras["resumed_from"]["epoch"] == 2 and extras["epochs_run"] == 3
    a, b = _weights(out / report["artifact"]), _weights(tmp_path / "ref" / ref["artifact"])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_override_of_a_later_stage_reuses_earlier_stages(tmp_path):
    out = tmp_path / "run"
    first = run_recipe(recipe(), out, progress=False)
    dense_json = (out / "stages/0-dense/stage.json").read_bytes()
    second = run_recipe(recipe(), out, overrides=["stages.zero.fraction=0.95"], progress=False)
    assert (out / "stages/0-dense/stage.json").read_bytes() == dense_json
    assert second["final"]["nonzero_params"] < first["final"]["nonzero_params"]
    assert load_recipe(out / "recipe.yaml").stage("zero").config.fraction == 0.95
    # changing the baseline stage reruns everything after it
    third = run_recipe(recipe(), out, overrides=["stages.dense.epochs=1"], progress=False)
    assert (out / "stages/0-dense/stage.json").read_bytes() != dense_json
    assert third["baseline"]["accuracy"] != first["baseline"]["accuracy"]


def test_cli_run_eval_compare(tmp_path, capsys):
    import yaml

    from torchslim.cli import main

    rp = tmp_path / "tiny.yaml"
    rp.write_text(yaml.safe_dump(recipe()))
    assert main(["run", str(rp), "--out", str(tmp_path / "a"), "--no-progress", "stages.dense.epochs=2"]) == 0
    assert main(["run", str(rp), "--out", str(tmp_path / "b"), "--no-progress", "--json",
                 "stages.zero.fraction=0.5"]) == 0
    out_b = capsys.readouterr().out
    rep_b = json.loads(out_b[out_b.index("{"):])
    assert rep_b["stages"][1]["config"]["fraction"] == 0.5
    assert main(["eval", str(tmp_path / "b" / rep_b["artifact"]), "--dataset", "digits", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["accuracy"] == rep_b["final"]["accuracy"]
    html = tmp_path / "cmp.html"
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--html", str(html)]) == 0
    text = capsys.readouterr().out
    assert "compression ratio" in text and "a" in text and "b" in text
    assert html.read_text().count("data:image/png;base64,") >= 1
    assert main(["run", str(rp), "--out", str(tmp_path / "c"), "stages.zero.fraction=2"]) == 2
    assert "fraction must be in [0, 1)" in capsys.readouterr().err


def test_recipe_level_distillation_from_the_baseline(tmp_path):
    def r(**top):
        x = recipe()
        x["stages"][1] = {"name": "ft", "kind": "test.finetune"}
        x.update(top)
        return x

    plain = run_recipe(r(), tmp_path / "plain", progress=False)
    kd = run_recipe(r(teacher="baseline", distill={"temperature": 2.0, "alpha": 0.5}), tmp_path / "kd",
                    progress=False)
    assert plain["stages"][1]["extras"].get("loss") is None
    ex = kd["stages"][1]["extras"]
    assert ex["loss"] == "DistillLoss" and ex["teacher_params"] == kd["baseline"]["params"]
    # the dense stage (before the baseline) is the same; the fine-tune differs
    assert kd["baseline"]["accuracy"] == plain["baseline"]["accuracy"]
    a, b = _weights(tmp_path / "kd" / kd["artifact"]), _weights(tmp_path / "plain" / plain["artifact"])
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_recipe_trains_its_own_teacher_once_and_resumes_it(tmp_path):
    teacher = {"zoo": "lenet300", "kwargs": {"hidden": [64, 32]}, "train": {"epochs": 2, "lr": 0.01, "batch_size": 64}}
    x = recipe()
    x["stages"][1] = {"name": "ft", "kind": "test.finetune"}
    x.update(teacher=teacher, distill={"temperature": 2.0, "alpha": 0.5})
    out = tmp_path / "run"
    rep = run_recipe(x, out, progress=False)
    t_params = 64 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10
    assert rep["teacher"]["params"] == t_params != rep["baseline"]["params"]
    assert rep["teacher"]["accuracy"] > 0.8 and rep["teacher"]["resumed_from"] is None
    ex = rep["stages"][1]["extras"]
    assert ex["loss"] == "DistillLoss" and ex["teacher_params"] == t_params
    t_art = out / "teacher" / "model.safetensors"
    assert sum(p.numel() for p in load(t_art).parameters()) == t_params
    stamp = t_art.stat().st_mtime_ns
    # a later stage changed: the teacher is reused, not retrained
    rep2 = run_recipe(x, out, progress=False, overrides=["stages.ft.finetune.epochs=2"])
    assert t_art.stat().st_mtime_ns == stamp and rep2["teacher"] == rep["teacher"]
    # killed after its first epoch (record gone, checkpoint kept): training resumes there
    (out / "teacher" / "teacher.json").unlink()
    rep3 = run_recipe(x, out, progress=False, overrides=["stages.ft.finetune.epochs=1"])
    assert rep3["teacher"]["resumed_from"] is not None
    # another teacher spec: retrained from scratch, and the stages after the baseline rerun
    rep4 = run_recipe(x, out, progress=False, overrides=["teacher.train.epochs=1"])
    assert rep4["teacher"]["resumed_from"] is None and t_art.stat().st_mtime_ns != stamp
    assert rep4["baseline"]["accuracy"] == rep["baseline"]["accuracy"]


def test_teacher_train_fields_are_validated():
    x = recipe()
    x.update(teacher={"zoo": "lenet300", "train": {"epochz": 2}}, distill={})
    with pytest.raises(Exception, match=r"teacher.*train.*unknown field\(s\) \['epochz'\]"):
        load_recipe(x)
