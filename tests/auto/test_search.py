"""A small study end to end: the front is the Pareto front of the trials
within the budget (checked by brute force over the database), every point a
real artifact whose report.json matches a re-measure; a rerun resumes (runs
nothing more); other settings in the same folder are refused; the recipe stage."""
import json

import optuna
import pytest

from torchslim.analysis.evaluate import evaluate
from torchslim.artifact import load
from torchslim.auto import auto
from torchslim.auto.pareto import dominates
from torchslim.auto.storage import logical_trials
from torchslim.core.errors import ConfigError
from torchslim.zoo import load_dataset, split_train

from .conftest import HOLDOUT, fast_config


def _splits(data):
    _, hold = split_train(load_dataset(data, "train"), HOLDOUT, seed=0)
    return hold, load_dataset(data, "test")


def test_study_end_to_end(tmp_path, digits_model, digits_data):
    out = tmp_path / "search"
    data = {"dataset": digits_data, "holdout": HOLDOUT}
    result = auto(str(digits_model), data=data, out=out, n_trials=5, progress=False, **fast_config())
    front = json.loads((out / "front.json").read_text())
    assert front["front"] == result.front and front["counts"] == {"complete": 5}

    # the front, recomputed by brute force from the database
    study = optuna.load_study(study_name="auto", storage=f"sqlite:///{out / 'study.db'}")
    trials = logical_trials(study.get_trials())
    assert sorted(t.number for t in trials) == list(range(5))
    ok = [t for t in trials if t.state.name == "COMPLETE" and all(v <= 0 for v in t.constraints.values())]
    dirs = ["minimize", "maximize"]
    want = {t.number for t in ok if not any(dominates(u.values, t.values, dirs) for u in ok)}
    assert want and {p["trial"] for p in front["front"]} == want
    assert [p["values"]["bytes"] for p in front["front"]] == sorted(p["values"]["bytes"] for p in front["front"])

    # every point: an artifact on disk, its report.json, the numbers re-measured from the artifact alone
    hold, test = _splits(digits_data)
    base = front["baseline"]
    for p in front["front"]:
        art, rep = out / p["artifact"], json.loads((out / p["report"]).read_text())
        assert art.is_file() and art.suffix == ".tslim"  # the entropy-coded artifact: bytes matter
        assert rep["final"]["size_bytes"] == art.stat().st_size == p["metrics"]["size_bytes"] == p["values"]["bytes"]
        model = load(art)
        h, t = evaluate(model, hold)["accuracy"], evaluate(model, test)["accuracy"]
        assert h == rep["final"]["holdout_accuracy"] == p["metrics"]["holdout_accuracy"]
        assert t == rep["final"]["accuracy"] == p["metrics"]["accuracy"]
        assert p["values"]["accuracy"] == pytest.approx(100 * h)
        assert 100 * (base["holdout_accuracy"] - h) <= 4 + 1e-9  # the budget, judged on the holdout
        assert rep["baseline"]["holdout_accuracy"] == base["holdout_accuracy"]
        assert (out / p["dir"] / "recipe.yaml").is_file()  # a real recipe run, resumable on its own
    page = (out / "report.html").read_text()
    assert 'src="data:image/png;base64,' in page and "<script" not in page and "optuna-dashboard sqlite:///" in page

    # a rerun resumes a finished search: nothing runs again
    again = auto(str(digits_model), data=data, out=out, n_trials=5, progress=False, **fast_config())
    assert again.front == result.front and len(study.get_trials()) == 5
    # other settings in the same folder are refused, naming what differs
    with pytest.raises(ConfigError, match="budget"):
        auto(str(digits_model), data=data, out=out, n_trials=5, progress=False, **fast_config(budget="max_drop=1"))


def test_recipe_stage(tmp_path, digits_model, digits_data):
    from torchslim.recipe import run_recipe

    stage = {"kind": "auto.search", "n_trials": 2, "seeds": 0, **fast_config(objectives=["bytes"])}
    recipe = {"name": "auto-stage", "model": {"artifact": str(digits_model)},
              "data": {"dataset": digits_data, "holdout": HOLDOUT}, "measure": {"latency": False}, "stages": [stage]}
    report = run_recipe(recipe, tmp_path / "run", progress=False, html=False)
    front = json.loads((tmp_path / "run" / "stages" / "0-auto.search" / "search" / "front.json").read_text())
    best = min(front["front"], key=lambda p: p["values"]["bytes"])
    assert report["final"]["size_bytes"] == best["metrics"]["size_bytes"]
    assert report["stages"][0]["extras"]["auto"]["picked"] == best["trial"]
    assert report["final"]["holdout_accuracy"] == best["metrics"]["holdout_accuracy"]
