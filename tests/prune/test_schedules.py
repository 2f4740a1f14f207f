"""Schedules: the cubic AGP curve, AGP during fit (exact resume), one-shot and
iterative prune/fine-tune."""
import pytest
import torch

from torchslim.core import ConfigError
from torchslim.prune import AGPCallback, agp, cubic_sparsity, iterative, masks_of, one_shot, sparsity_report
from torchslim.train import Callback, TrainConfig, fit
from torchslim.zoo import build_model


def test_cubic_schedule_formula():
    for t in (0.0, 0.1, 0.5, 0.9, 1.0, 1.5):
        tt = min(1.0, t)
        assert cubic_sparsity(t, initial=0.1, final=0.9) == pytest.approx(0.9 + (0.1 - 0.9) * (1 - tt) ** 3)


def test_agp_targets_on_steps():
    cb = AGPCallback(0.8, start=0.2, end=0.6, frequency=5)
    total = 100
    assert cb.target(10, total) is None  # before start
    assert cb.target(20, total) == pytest.approx(0.0)
    assert cb.target(22, total) is None  # between updates
    assert cb.target(40, total) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert cb.target(60, total) == pytest.approx(0.8) and cb.target(99, total) == pytest.approx(0.8)
    with pytest.raises(ConfigError):
        AGPCallback(0.8, criterion="taylor")


class Interrupt(Callback):
    def __init__(self, at):
        self.at = at

    def on_batch_end(self, state):
        if state.global_step == self.at:
            raise KeyboardInterrupt


def test_agp_reaches_target_and_resumes_exactly(digits, tmp_path):
    train = digits[0].take(640)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=3e-3, checkpoint_every_steps=3)

    def run(out, interrupt=None):
        torch.manual_seed(0)
        model = build_model("lenet300", dataset="digits")
        cb = AGPCallback(0.9, start=0.1, end=0.7, frequency=2)
        cb.prepare(model)
        extra = [Interrupt(interrupt)] if interrupt else []
        fit(model, train, cfg, callbacks=[cb, *extra], out_dir=out, progress=False)
        return model, cb

    ref, cb_ref = run(tmp_path / "a")
    assert sparsity_report(ref)["sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert cb_ref.updates > 3  # gradual, not one-shot
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", interrupt=8)
    resumed, cb_res = run(tmp_path / "b")
    assert cb_res.updates == cb_ref.updates
    for k, v in ref.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_one_shot_and_iterative(digits, tmp_path):
    train, test = digits
    from torchslim.analysis.evaluate import evaluate

    torch.manual_seed(0)
    base = build_model("lenet300", dataset="digits")
    fit(base, train, TrainConfig(epochs=8, batch_size=64, lr=3e-3), progress=False)
    dense_acc = evaluate(base, test)["accuracy"]
    ft = TrainConfig(epochs=2, batch_size=64, lr=1e-3)
    import copy

    a = one_shot(copy.deepcopy(base), 0.8, train, finetune=ft, out_dir=tmp_path / "os", progress=False)
    assert sparsity_report(a)["sparsity"] == pytest.approx(0.8, abs=1e-4)
    b = iterative(copy.deepcopy(base), 0.8, train, cycles=3, finetune=ft, ranking="layer", out_dir=tmp_path / "it",
                  progress=False)
    for layer in sparsity_report(b)["layers"].values():
        assert layer["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert sorted(p.name for p in (tmp_path / "it").iterdir()) == ["cycle1", "cycle2", "cycle3"]
    for m in (a, b):
        assert evaluate(m, test)["accuracy"] > dense_acc - 0.05
    # rerunning resumes every finished cycle from its checkpoint: same result
    c = iterative(copy.deepcopy(base), 0.8, train, cycles=3, finetune=ft, ranking="layer", out_dir=tmp_path / "it",
                  progress=False)
    assert all(torch.equal(v, masks_of(c)[k]) for k, v in masks_of(b).items())


def test_agp_layer_sparsity_follows_the_curve_per_layer(digits, tmp_path):
    cb = AGPCallback(0.5, start=0.0, end=0.5, frequency=1, layer_sparsity={"fc1": 0.95, "fc3": 0.2})
    p = cb.progress(25, 100)
    assert p == pytest.approx(1 - 0.5 ** 3)
    assert cb.target(25, 100) == pytest.approx(0.5 * p)
    assert cb.layer_targets(p) == pytest.approx({"fc1": 0.95 * p, "fc3": 0.2 * p})
    with pytest.raises(ConfigError):
        AGPCallback(0.5, initial_sparsity=0.3, layer_sparsity={"fc1": 0.2})
    torch.manual_seed(0)
    model = build_model("lenet300", dataset="digits")
    agp(model, 0.5, digits[0].take(640), TrainConfig(epochs=1, batch_size=64), end=0.6, frequency=2,
        ranking="layer", layer_sparsity={"fc1": 0.95, "fc3": 0.2}, out_dir=tmp_path, progress=False)
    layers = sparsity_report(model)["layers"]
    assert layers["fc1"]["sparsity"] == pytest.approx(0.95, abs=1e-3)
    assert layers["fc2"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert layers["fc3"]["sparsity"] == pytest.approx(0.2, abs=1e-2)


def test_agp_loads_a_checkpoint_state_without_progress():
    cb = AGPCallback(0.8, initial_sparsity=0.2)
    cb.load_state_dict({"current": 0.5, "updates": 7})  # as written before per-layer targets
    assert cb.reached == pytest.approx(0.5) and cb.updates == 7
    cb.load_state_dict(cb.state_dict())
    assert cb.reached == pytest.approx(0.5) and cb.current == pytest.approx(0.5)
