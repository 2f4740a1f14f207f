"""The distillation objective, teacher handling, training, handler and CLI."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import torchslim
from torchslim.core.config import apply, config_class
from torchslim.core.context import Context
from torchslim.core.errors import ConfigError
from torchslim.distill import (AttentionTransferConfig, DistillConfig, HintConfig, LayerMapConfig, distill, make_loss,
                               soft_target_loss)
from torchslim.train import TrainConfig, fit
from torchslim.zoo import build_model


def test_config_round_trip_with_nested_terms():
    cfg = DistillConfig(temperature=3.0, alpha=0.7, hints=(HintConfig(student="a", teacher="b", loss="cosine"),),
                        attention=(AttentionTransferConfig(student="c", teacher="d"),),
                        layers=LayerMapConfig(student_layers=(0, 1), teacher_layers=(1, 3)),
                        train=TrainConfig(epochs=3))
    assert DistillConfig.from_dict(cfg.to_dict()) == cfg
    assert DistillConfig.from_json(cfg.to_json()) == cfg
    assert DistillConfig.from_yaml(cfg.to_yaml()) == cfg
    assert config_class("distill") is DistillConfig
    with pytest.raises(ConfigError, match="alpha"):
        DistillConfig(alpha=1.5)
    with pytest.raises(ConfigError, match="same length"):
        LayerMapConfig(student_layers=(0,), teacher_layers=(1, 2))


def _pair():
    torch.manual_seed(0)
    t = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
    s = nn.Sequential(nn.Linear(6, 3), nn.ReLU(), nn.Linear(3, 4))
    return t, s


def test_loss_mixes_soft_and_hard_terms_exactly():
    t, s = _pair()
    x, y = torch.randn(8, 6), torch.randint(0, 4, (8,))
    for alpha in (0.0, 0.3, 1.0):
        loss_fn = make_loss(DistillConfig(alpha=alpha, temperature=2.0), t)
        loss, out = loss_fn(s, x, y)
        expected = alpha * soft_target_loss(s(x), t(x), 2.0) + (1 - alpha) * F.cross_entropy(s(x), y)
        assert torch.allclose(loss, expected, atol=1e-6)
        assert torch.equal(out, s(x))
        loss_fn.close()


def test_teacher_is_frozen_and_cache_gives_identical_losses():
    t, s = _pair()
    t.train()
    before = copy.deepcopy(t.state_dict())
    x, y = torch.randn(10, 6), torch.randint(0, 4, (10,))
    plain = make_loss(DistillConfig(), t)
    cached = make_loss(DistillConfig(cache_teacher=True), t)
    assert not t.training and not any(p.requires_grad for p in t.parameters())
    l1 = plain(s, x, y)[0]
    l2 = cached(s, x, y)[0]
    perm = torch.randperm(10)
    l3 = cached(s, x[perm], y)[0]  # same samples, other order: all cache hits
    assert torch.equal(cached.teacher(x[perm])["output"], t(x[perm]))
    assert cached.teacher.hits == 20 and cached.teacher.misses == 10
    assert torch.allclose(l1, l2)
    l1.backward()
    assert all(p.grad is None for p in t.parameters())
    assert all(torch.equal(v, before[k]) for k, v in t.state_dict().items())
    assert torch.isfinite(l3)


def test_distill_moves_the_student_toward_the_teacher(digits):
    train, test = digits
    teacher = build_model("mlp", dataset="digits", hidden=[128])
    fit(teacher, train, TrainConfig(epochs=10, batch_size=32, lr=3e-3), progress=False)
    student = build_model("mlp", dataset="digits", hidden=[16])
    agree = lambda: float((student(test.x).argmax(1) == teacher(test.x).argmax(1)).float().mean())  # noqa: E731
    a0 = agree()
    res = distill(student, teacher, train, DistillConfig(alpha=1.0, cache_teacher=True,
                                                         train=TrainConfig(epochs=8, batch_size=32, lr=1e-2)), progress=False)
    assert agree() > max(a0, 0.8)
    # the teacher ran once per sample; the later epochs were served from the cache
    assert res.teacher_stats["teacher_samples"] == len(train)
    assert res.teacher_stats["cache_hits"] == 7 * len(train)


def test_hints_with_adapters_train_and_resume_exactly(tmp_path):
    torch.manual_seed(0)
    data = torchslim.zoo.ArrayDataset(torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,)))
    teacher = build_model("resnet8", input_shape=[1, 8, 8], width=8)
    cfg = DistillConfig(hints=(HintConfig(student="layer3", teacher="layer3"),),
                        attention=(AttentionTransferConfig(student="layer2", teacher="layer2"),),
                        train=TrainConfig(epochs=2, batch_size=16, lr=1e-3, scheduler="none"))

    def student():
        torch.manual_seed(1)
        return build_model("resnet8", input_shape=[1, 8, 8], width=4)

    full = student()
    loss_full = make_loss(cfg, teacher, full)
    fit(full, data, cfg.train, loss_fn=loss_full, callbacks=[loss_full.callback()], progress=False)
    assert "hint0" in loss_full.adapters and isinstance(loss_full.adapters["hint0"], nn.Conv2d)
    assert loss_full.adapters["hint0"].weight.shape == (32, 16, 1, 1)
    assert set(loss_full.last_terms) == {"hard", "output", "hint0", "at0"}
    # interrupted after one epoch, then resumed from the checkpoint
    part = student()
    lp = make_loss(cfg, teacher, part)
    fit(part, data, cfg.train.replace(epochs=1), loss_fn=lp, callbacks=[lp.callback()], out_dir=tmp_path, progress=False)
    lp.close()
    resumed = student()
    lr_ = make_loss(cfg, teacher, resumed)
    fit(resumed, data, cfg.train, loss_fn=lr_, callbacks=[lr_.callback()], out_dir=tmp_path, progress=False)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    assert torch.allclose(loss_full.adapters["hint0"].weight, lr_.adapters["hint0"].weight, atol=1e-6)


def test_adapters_learn_without_the_callback():
    """Used as ctx.loss_fn by another method's fit (no callback, adapters not
    in its optimizer), the adapters still learn."""
    torch.manual_seed(0)
    t = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 3))
    s = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    data = torchslim.zoo.ArrayDataset(torch.randn(256, 5), torch.randint(0, 3, (256,)))
    loss = make_loss(DistillConfig(alpha=1.0, output_loss="none", adapter_lr=1e-2,
                                   hints=(HintConfig(student="1", teacher="1"),)), t)
    fit(s, data, TrainConfig(epochs=1, batch_size=32, lr=1e-3), loss_fn=loss, progress=False)
    first = loss.last_terms["hint0"]
    w0 = loss.adapters["hint0"].weight.detach().clone()
    fit(s, data, TrainConfig(epochs=6, batch_size=32, lr=1e-3, seed=1), loss_fn=loss, progress=False)
    assert not torch.equal(w0, loss.adapters["hint0"].weight)
    assert loss.last_terms["hint0"] < first


def test_handler_needs_a_teacher_and_trains(digits, tmp_path):
    train, _ = digits
    t, s = build_model("mlp", dataset="digits", hidden=[32]), build_model("mlp", dataset="digits", hidden=[8])
    cfg = DistillConfig(train=TrainConfig(epochs=1, max_steps_per_epoch=3))
    with pytest.raises(ConfigError, match="teacher"):
        apply(s, cfg, Context(train_data=train))
    w = s[2].weight.detach().clone()
    apply(s, cfg, Context(train_data=train, teacher=t, stage_out=tmp_path, progress=False))
    assert not torch.equal(w, s[2].weight)
    assert (tmp_path / "checkpoints" / "last.pt").exists()


def test_unknown_module_names_are_reported():
    t, s = _pair()
    with pytest.raises(ConfigError, match="no module named 'nope'"):
        make_loss(DistillConfig(hints=(HintConfig(student="0", teacher="nope"),)), t)


def test_cli_distill_writes_the_student(tmp_path):
    from torchslim.cli import main

    teacher = tmp_path / "t.safetensors"
    torchslim.artifact.save(build_model("mlp", dataset="digits", hidden=[32]), teacher)
    out = tmp_path / "s.safetensors"
    rc = main(["distill", "--teacher", str(teacher), "--student", "mlp", "--student-kwargs", '{"hidden": [8]}',
               "--dataset", "digits", "--epochs", "1", "--max-steps-per-epoch", "2", "--temperature", "3",
               "--alpha", "0.5", "--out", str(out), "--json", "--no-progress"])
    assert rc == 0
    m = torchslim.artifact.load(out)
    assert m[2].out_features == 8
    assert main(["distill", "--teacher", "mlp", "--student", "mlp", "--dataset", "digits", "--out",
                 str(tmp_path / "x.safetensors")]) == 2  # untrained zoo teacher is refused
