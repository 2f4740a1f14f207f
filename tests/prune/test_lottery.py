"""Lottery tickets: IMP rounds prune the remaining weights at the given
rate, survivors are rewound to the snapshot (init or step k), the control
keeps the mask with fresh weights."""
import pytest
import torch

from torchslim.core import ConfigError
from torchslim.prune import lottery_ticket, masks_of, plain_state, random_reinit, rewind, sparsity_report
from torchslim.train import TrainConfig, fit
from torchslim.zoo import build_model


def _model():
    torch.manual_seed(0)
    return build_model("lenet300", dataset="digits")


def test_rewind_to_init_and_to_step_k(digits, tmp_path):
    train = digits[0].take(512)
    cfg = TrainConfig(epochs=1, batch_size=64, lr=3e-3)
    init = plain_state(_model())
    seen_rounds = []
    res = lottery_ticket(_model(), train, cfg, rounds=2, rate=0.5, ranking="layer", layer_rates={"fc3": 0.25},
                         on_round=lambda r, m: seen_rounds.append((r, masks_of(m))), progress=False)
    for k, v in init.items():
        assert torch.equal(res.rewind_state[k], v)  # rewind_step=0: the initial weights
    rep = sparsity_report(res.model)["layers"]
    assert rep["fc1"]["sparsity"] == pytest.approx(0.75, abs=1e-3)
    assert rep["fc3"]["sparsity"] == pytest.approx(1 - 0.75 ** 2, abs=1e-2)
    assert [r for r, _ in seen_rounds] == [0, 1, 2]
    m1, m2 = seen_rounds[1][1], seen_rounds[2][1]
    assert all((m2[k] <= m1[k]).all() for k in m1)  # masks only shrink
    assert [h["round"] for h in res.history] == [0, 1, 2]
    assert res.history[2]["weights_left"] < res.history[1]["weights_left"] < 1.0

    # rewind to step k: the snapshot equals a plain run stopped after k steps
    res_k = lottery_ticket(_model(), train, cfg, rounds=1, rate=0.5, rewind_step=3, out_dir=tmp_path / "k",
                           progress=False)
    ref = _model()  # a plain run of the same schedule, weights grabbed after 3 steps
    from torchslim.prune import attach_mask
    from torchslim.train import Callback

    class Grab(Callback):
        state = None

        def on_batch_end(self, st):
            if st.global_step == 3:
                Grab.state = plain_state(st.model)

    for layer in (ref.fc1, ref.fc2, ref.fc3):
        attach_mask(layer)
    fit(ref, train, cfg, callbacks=[Grab()], progress=False)
    for k, v in Grab.state.items():
        assert torch.allclose(res_k.rewind_state[k], v), k
    assert not torch.equal(res_k.rewind_state["fc1.weight"], init["fc1.weight"])


def test_rewind_keeps_masks_and_reinit_changes_weights():
    m = _model()
    from torchslim.prune import prune_to_sparsity

    init = plain_state(m)
    with torch.no_grad():
        m.fc1.weight.add_(1.0)
    prune_to_sparsity(m, 0.5)
    masks = masks_of(m)
    rewind(m, init)
    assert torch.equal(m.fc1.weight_orig, init["fc1.weight"])
    assert torch.equal(masks_of(m)["fc1"], masks["fc1"])
    x = torch.rand(3, 1, 8, 8)
    m(x)
    assert (m.fc1.weight[~masks["fc1"]] == 0).all()
    r = random_reinit(m, seed=5)
    assert torch.equal(masks_of(r)["fc1"], masks["fc1"])
    assert not torch.allclose(r.fc1.weight_orig, m.fc1.weight_orig)
    r(x)
    assert (r.fc1.weight[~masks["fc1"]] == 0).all()
    # same init distribution: similar scale
    assert float(r.fc1.weight_orig.detach().std()) == pytest.approx(float(init["fc1.weight"].std()), rel=0.1)


def test_lottery_bad_arguments(digits):
    with pytest.raises(ConfigError):
        lottery_ticket(_model(), digits[0], TrainConfig(), rounds=0)
    with pytest.raises(ConfigError, match="beyond"):
        lottery_ticket(_model(), digits[0].take(64), TrainConfig(epochs=1, batch_size=64), rounds=1,
                       rewind_step=50, progress=False)
