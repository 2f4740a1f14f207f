"""Early stopping: every fine-tune epoch's holdout accuracy reaches the
pruner's study, and a trial below the accuracy the budget allows stops there
(its recipe never finishes); gradual pruning reports only once its model has
its final sparsity."""
import optuna
import pytest

from torchslim.auto import auto
from torchslim.auto.reporting import epoch_callbacks, reporting
from torchslim.train.callbacks import TrainState

from .conftest import HOLDOUT, fast_config


def test_threshold_pruner_stops_trials_below_the_bound(tmp_path, digits_model, digits_data):
    out = tmp_path / "search"
    space = {**fast_config()["space"], "finetune": {"epochs": [2, 2]}, "unstructured": {"min_density": 0.3, "end": 0.5}}
    # 99.9% on the holdout is out of reach: the first report (epoch 1, AGP done) stops every trial
    result = auto(str(digits_model), data={"dataset": digits_data, "holdout": HOLDOUT}, out=out, n_trials=3,
                  progress=False, **fast_config(budget="accuracy>=99.9", pruner="threshold", prune_margin=0.0,
                                                space=space, seeds=0))
    assert result.front == [] and result.data["counts"] == {"pruned": 3}
    storage = f"sqlite:///{out / 'study.db'}"
    main = optuna.load_study(study_name="auto", storage=storage).get_trials()
    hold = {t.number: t for t in optuna.load_study(study_name="auto.holdout", storage=storage).get_trials()}
    for t in main:
        assert t.user_attrs["pruned_by"].startswith("holdout accuracy") and "epoch 1 (report 1)" in t.user_attrs["pruned_by"]
        h = hold[t.user_attrs["holdout_trial"]]
        assert h.state.name == "PRUNED" and list(h.intermediate_values) == [0]
        assert h.intermediate_values[0] < 99.9
        assert not (out / t.user_attrs["dir"] / "report.json").exists()  # stopped before its recipe finished
        # what is known reaches the samplers: the accuracy bound it missed, as a constraint value
        assert t.constraints["accuracy"] == pytest.approx(99.9 - round(h.intermediate_values[0], 4))


def test_reports_start_at_the_given_epoch():
    seen = []
    with reporting(lambda acc, epoch: seen.append((acc, epoch))):
        (cb,) = epoch_callbacks(start=3)
    state = TrainState(model=None, optimizer=None, config=None)
    for epoch in range(5):
        state.epoch = epoch
        cb.on_epoch_end(state, {"eval_accuracy": epoch / 10})
    assert seen == [(0.2, 3), (0.3, 4), (0.4, 5)]
    assert epoch_callbacks() == []  # no search listening: plain training
