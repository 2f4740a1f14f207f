import pytest
import torch

from torchslim.core import ConfigError
from torchslim.train import Callback, TrainConfig, fit, lr_factor
from torchslim.zoo import build_model


def test_fit_learns_digits(digits):
    tr, te = digits
    m = build_model("lenet300", dataset="digits")
    r = fit(m, tr, TrainConfig(epochs=8, lr=3e-3, batch_size=64), eval_data=te, progress=False)
    assert r.history[-1]["eval_accuracy"] > 0.93
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]


def test_callbacks_run_in_order_and_can_edit_grads(digits):
    tr, _ = digits
    events = []

    class Freeze(Callback):
        def on_fit_start(self, s): events.append("fit")
        def on_epoch_start(self, s): events.append("epoch")
        def extra_loss(self, s): return 0.0 * sum(p.sum() for p in s.model.parameters())
        def on_after_backward(self, s): s.model.fc1.weight.grad.zero_()
        def on_epoch_end(self, s, metrics): events.append(("end", metrics["epoch"]))

    m = build_model("lenet300", dataset="digits")
    w0 = m.fc1.weight.detach().clone()
    fit(m, tr, TrainConfig(epochs=2, optimizer="sgd", momentum=0.0, lr=0.1), callbacks=[Freeze()], progress=False)
    assert torch.equal(m.fc1.weight, w0)  # zeroed grads: no change with plain SGD
    assert events == ["fit", "epoch", ("end", 1), "epoch", ("end", 2)]


class Crash(Callback):
    """Simulates a kill: dies after a given number of optimizer steps."""

    def __init__(self, at_step):
        self.at_step = at_step

    def on_batch_end(self, s):
        if s.global_step == self.at_step:
            raise KeyboardInterrupt


def test_resume_is_exact_and_checks_settings(digits, tmp_path):
    tr, _ = digits
    cfg = TrainConfig(epochs=3, lr=2e-3, batch_size=100, seed=4, checkpoint_every_steps=5)
    torch.manual_seed(0)
    full = build_model("lenet300", dataset="digits")
    fit(full, tr, cfg, progress=False)
    torch.manual_seed(0)
    part = build_model("lenet300", dataset="digits")
    with pytest.raises(KeyboardInterrupt):  # 15 steps/epoch: dies in epoch 2 after step 22
        fit(part, tr, cfg, out_dir=tmp_path, callbacks=[Crash(22)], progress=False)
    torch.manual_seed(123)  # a fresh process with another init: resume must overwrite it
    resumed = build_model("lenet300", dataset="digits")
    r = fit(resumed, tr, cfg, out_dir=tmp_path, progress=False)
    assert r.resumed_from == {"epoch": 1, "batch_in_epoch": 5, "global_step": 20}
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # a finished run resumes to "nothing to do"
    r2 = fit(resumed, tr, cfg, out_dir=tmp_path, progress=False)
    assert r2.resumed_from["epoch"] == 3 and len(r2.history) == 3
    with pytest.raises(ConfigError, match="lr"):
        fit(resumed, tr, cfg.replace(lr=0.5), out_dir=tmp_path, progress=False)


def test_lr_schedule_is_a_function_of_the_step():
    cfg = TrainConfig(scheduler="cosine", warmup_steps=10)
    assert lr_factor(cfg, 0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(cfg, 10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 100, 100, 10) == pytest.approx(0.0)
    step = TrainConfig(scheduler="step", step_size=2, gamma=0.5)
    assert lr_factor(step, 45, 100, 10) == pytest.approx(0.25)


def test_diverging_loss_is_reported(digits):
    tr, _ = digits
    m = build_model("lenet300", dataset="digits")
    with torch.no_grad():
        m.fc1.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="learning rate"):
        fit(m, tr, TrainConfig(epochs=1), progress=False)


def test_resume_with_parameters_registered_in_another_order(tmp_path):
    """A model pruned in memory and the same model rebuilt from its artifact
    register weight and bias in different orders; the optimizer state of a
    checkpoint must line up with either (a kill inside a stage, then resume)."""
    import torch.nn as nn

    from torchslim.zoo.data import ArrayDataset

    g = torch.Generator().manual_seed(0)
    data = ArrayDataset(torch.rand(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g))
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2, optimizer="adam", max_steps_per_epoch=2)

    def model(reorder: bool):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
        if reorder:  # bias registered before weight, as after torch.nn.utils.prune.remove
            for lin in (m[0], m[2]):
                lin._parameters["weight"] = lin._parameters.pop("weight")
        return m

    class Kill(Callback):
        def on_epoch_start(self, state):
            if state.epoch == 1:
                raise KeyboardInterrupt("killed after the first epoch")

    with pytest.raises(KeyboardInterrupt):
        fit(model(True), data, cfg, out_dir=tmp_path, callbacks=[Kill()], progress=False)
    res = fit(model(False), data, cfg, out_dir=tmp_path, progress=False)  # Adam's state lines up by name
    assert res.resumed_from["epoch"] == 1 and len(res.history) == 2
