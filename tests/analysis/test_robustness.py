"""Robustness analysis against oracles: ECE against a plain numpy reference,
corruptions (identity at severity 0, deterministic per seed, geometry of
translation and rotation measured on a dot), agreement of a model with
itself, the per-class drop and the per-layer restore worked out by hand, and
the HTML section with its plots."""
from __future__ import annotations

import copy
import functools
import math

import numpy as np
import pytest
import torch

from torchslim.prune.sensitivity import sensitivity_scan
import torch.nn as nn

from torchslim.analysis.robustness import (CORRUPTIONS, TEXT_CORRUPTIONS, agreement, compare, corrupt,
                                           corrupt_tokens, expected_calibration_error, layer_sensitivity,
                                           per_class_drop, reliability, robustness)
from torchslim.core.errors import ConfigError


def _numpy_ece(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    conf, pred = p.max(1), p.argmax(1)
    ece = 0.0
    for i in range(bins):
        lo, hi = i / bins, (i + 1) / bins
        inside = [k for k in range(len(conf)) if lo < conf[k] <= hi]
        if inside:
            acc = np.mean([pred[k] == labels[k] for k in inside])
            ece += len(inside) / len(conf) * abs(acc - np.mean([conf[k] for k in inside]))
    return ece


@pytest.mark.parametrize("seed,scale", [(0, 0.5), (1, 3.0), (2, 10.0)])
def test_ece_matches_a_numpy_oracle(seed, scale):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=scale, size=(500, 10))
    labels = np.where(rng.random(500) < 0.6, logits.argmax(1), rng.integers(0, 10, 500))
    got = expected_calibration_error(torch.tensor(logits), torch.tensor(labels))
    assert got == pytest.approx(_numpy_ece(logits, labels), abs=1e-12)
    bins = reliability(torch.tensor(logits), torch.tensor(labels))
    assert sum(bins["count"]) == 500 and len(bins["count"]) == 15


def test_ece_of_a_calibrated_case_and_a_confident_wrong_one():
    # two classes, confidence exactly 0.75 in every row, right on 3 of 4 rows: calibrated
    logits = torch.tensor([[math.log(3.0), 0.0]] * 4, dtype=torch.float64)
    assert expected_calibration_error(logits, torch.tensor([0, 0, 0, 1])) == pytest.approx(0.0, abs=1e-9)
    # always wrong at confidence 0.75: ECE 0.75
    assert expected_calibration_error(logits, torch.tensor([1, 1, 1, 1])) == pytest.approx(0.75)


def _images(n=6, side=12, seed=0):
    return torch.rand(n, 1, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
@pytest.mark.parametrize("shape", [(6, 1, 12, 12), (6, 144), (6, 2, 20)])
def test_corruption_identity_at_zero_deterministic_in_domain(kind, shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    assert corrupt(x, kind, 0, seed=3) is x
    if kind == "rotate" and len(shape) == 3:
        with pytest.raises(ConfigError, match="2-D images"):
            corrupt(x, kind, 2)
        return
    a, b = corrupt(x, kind, 3, seed=7), corrupt(x, kind, 3, seed=7)
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype
    assert not torch.equal(a, x)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    if kind in ("gaussian_noise", "impulse_noise", "translate", "rotate"):  # the random ones
        assert not torch.equal(a, corrupt(x, kind, 3, seed=8))


def test_corruption_respects_a_domain_and_rejects_bad_arguments():
    x = torch.rand(4, 1, 8, 8) * 4 - 2
    y = corrupt(x, "gaussian_noise", 5, domain=(-2, 2))
    assert float(y.min()) >= -2 and float(y.max()) <= 2
    assert torch.allclose(corrupt(x, "brightness", 100, domain=(-2, 2)), torch.full_like(x, 2.0))
    with pytest.raises(ConfigError, match="unknown corruption"):
        corrupt(x, "fog", 1)
    with pytest.raises(ConfigError, match="severity"):
        corrupt(x, "contrast", -1)


def _dot(side=28, at=(14.0, 14.0)):
    ys, xs = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                            indexing="ij")
    return torch.exp(-((xs - at[0]) ** 2 + (ys - at[1]) ** 2) / (2 * 1.2 ** 2)).view(1, 1, side, side)


def _centre(img):
    ys, xs = torch.meshgrid(torch.arange(img.shape[-2], dtype=torch.float32),
                            torch.arange(img.shape[-1], dtype=torch.float32), indexing="ij")
    w = img[0, 0]
    return float((w * xs).sum() / w.sum()), float((w * ys).sum() / w.sum())


def test_translation_and_rotation_move_a_dot_as_stated():
    side = 28
    x = _dot(side, (13.5, 13.5)).repeat(5, 1, 1, 1)
    for s in (1, 2, 3):
        moved = corrupt(x, "translate", s, seed=s)
        for i in range(5):
            cx, cy = _centre(moved[i: i + 1])
            assert math.hypot(cx - 13.5, cy - 13.5) == pytest.approx(CORRUPTIONS["translate"][0] * s * side, abs=0.05)
    # a dot 8 px right of the centre (13.5, 13.5) turns by 6 x severity degrees about it
    x = _dot(side, (21.5, 13.5)).repeat(4, 1, 1, 1)
    for s in (1, 3):
        turned = corrupt(x, "rotate", s, seed=0)
        for i in range(4):
            cx, cy = _centre(turned[i: i + 1])
            angle = math.degrees(abs(math.atan2(cy - 13.5, cx - 13.5)))
            assert angle == pytest.approx(CORRUPTIONS["rotate"][0] * s, abs=0.5)


def test_flat_square_vectors_are_corrupted_as_images():
    x = _images(5, 8)
    for kind in CORRUPTIONS:
        assert torch.equal(corrupt(x.reshape(5, 64), kind, 2, seed=1), corrupt(x, kind, 2, seed=1).reshape(5, 64))


def _tokens(n=8, seq=14, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, seq + 1, (n,), generator=g)
    ids = torch.randint(1000, 2000, (n, seq), generator=g)
    mask = (torch.arange(seq)[None] < lengths[:, None]).long()
    ids[:, 0] = 101
    ids[torch.arange(n), lengths - 1] = 102
    ids[mask == 0] = 0
    return ids, mask


@pytest.mark.parametrize("kind", sorted(TEXT_CORRUPTIONS))
def test_token_corruptions(kind):
    ids, mask = _tokens()
    assert corrupt_tokens(ids, mask, kind, 0) == (ids, mask)
    a, am = corrupt_tokens(ids, mask, kind, 4, seed=1)
    b, bm = corrupt_tokens(ids, mask, kind, 4, seed=1)
    assert torch.equal(a, b) and torch.equal(am, bm) and not torch.equal(a, ids)
    for r in range(len(ids)):
        real, new = ids[r][mask[r] == 1].tolist(), a[r][am[r] == 1].tolist()
        assert new[0] == 101 and new[-1] == 102 and (a[r][am[r] == 0] == 0).all()
        assert am[r].tolist() == sorted(am[r].tolist(), reverse=True)  # padding stays at the end
        if kind == "token_swap":
            assert sorted(new) == sorted(real) and len(new) == len(real)
        else:  # dropout keeps an ordered subsequence
            it = iter(real)
            assert all(t in it for t in new) and len(new) <= len(real)


def test_per_class_drop_by_hand():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    orig = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 0, 0])  # class accuracies 3/4, 2/2, 2/4
    comp = torch.tensor([0, 1, 1, 1, 1, 0, 2, 2, 2, 0])  # 1/4, 1/2, 3/4
    rows = per_class_drop(labels, orig, comp)
    assert [r["class"] for r in rows] == [0, 1, 2]
    assert [r["drop"] for r in rows] == pytest.approx([0.5, 0.5, -0.25])
    assert [(r["n"], r["original"], r["compressed"]) for r in rows] == [(4, 0.75, 0.25), (2, 1.0, 0.5), (4, 0.5, 0.75)]
    assert agreement(torch.eye(3)[orig], torch.eye(3)[comp]) == pytest.approx(0.6)


class _Net(nn.Module):
    def __init__(self, d=64, h=16, k=4):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, h), nn.Linear(h, k)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


@functools.lru_cache(maxsize=None)
def _trained(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long() + 2 * (x[:, 0, :, :4].mean((1, 2)) > 0.5).long()
    model = _Net()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x, y


def _task(n=240, seed=0):
    """A small trained 4-class classifier of 8x8 inputs (trained once per size), and its data."""
    model, x, y = _trained(n, seed)
    return copy.deepcopy(model), x, y


def test_a_model_agrees_with_itself():
    model, x, y = _task()
    r = compare(model, model, (x, y), severities=(1, 3), sensitivity="restore")
    assert r["clean"]["agreement"] == 1.0 and r["clean"]["original"] == r["clean"]["compressed"]
    for c in r["corruptions"].values():
        assert c["agreement"] == [1.0, 1.0] and c["original"] == c["compressed"]
    assert all(p["drop"] == 0 for p in r["per_class"])
    assert r["calibration"]["original"]["ece"] == r["calibration"]["compressed"]["ece"]
    assert all(row["gain"] == 0 for row in r["sensitivity"]["restore"]["layers"])
    single = robustness(model, (x, y), severities=(1, 3))
    assert single["clean"]["accuracy"] == r["clean"]["original"]
    assert single["corruptions"]["rotate"]["accuracy"] == r["corruptions"]["rotate"]["original"]


def test_restoring_the_damaged_layer_recovers_the_original():
    model, x, y = _task()
    damaged = copy.deepcopy(model)
    with torch.no_grad():
        damaged.fc1.weight.mul_(torch.rand(damaged.fc1.weight.shape) > 0.7)
    s = layer_sensitivity(model, damaged, (x, y))
    rows = {r["layer"]: r for r in s["layers"]}
    assert s["original"] > s["compressed"]
    assert rows["fc1"]["accuracy"] == s["original"] and rows["fc1"]["recovered"] == pytest.approx(1.0)
    assert rows["fc2"]["gain"] == 0
    narrow = _Net(h=8)  # compression that changed the width: fc1 and fc2 cannot be restored
    s = layer_sensitivity(model, narrow, (x, y))
    assert [r["status"].startswith("shape differs") for r in s["layers"]] == [True, True]


def test_compare_on_flat_inputs_equals_images_and_scan_runs():
    model, x, y = _task()
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.fc2.weight.add_(0.3 * torch.randn(other.fc2.weight.shape))
    img = compare(model, other, (x, y), severities=(2,), sensitivity=None)
    flat = compare(model, other, (x.reshape(len(x), 64), y), severities=(2,), sensitivity="scan",
                   scan_fn=sensitivity_scan)
    for k in CORRUPTIONS:
        assert img["corruptions"][k] == flat["corruptions"][k]
    assert flat["sensitivity"]["scan"]["layers"][0]["layer"] == "fc1"


def test_one_d_signals_skip_rotation():
    model = nn.Sequential(nn.Flatten(), nn.Linear(40, 3))
    x, y = torch.randn(30, 1, 40), torch.randint(0, 3, (30,))
    r = robustness(model, (x, y), severities=(1,))
    assert "rotate" in r["skipped"] and "rotate" not in r["corruptions"] and r["domain"] == [float(x.min()),
                                                                                             float(x.max())]


class _Encoder(nn.Module):
    def __init__(self, noise=0.0):
        super().__init__()
        self.emb = nn.Embedding(2100, 16)
        with torch.no_grad():
            self.emb.weight.add_(noise * torch.randn(self.emb.weight.shape))

    def forward(self, ids, mask):
        m = mask.unsqueeze(-1).float()
        return (self.emb(ids) * m).sum(1) / m.sum(1)


def test_text_encoders_agree_with_themselves():
    torch.manual_seed(0)
    enc = _Encoder()
    ids, mask = _tokens(24, 20)
    r = compare(enc, enc, (ids, mask), severities=(1, 4))
    assert r["task"] == "text" and r["clean"]["agreement"]["nn_agreement"] == 1.0
    for c in r["corruptions"].values():
        assert c["agreement"]["nn_agreement"] == [1.0, 1.0]
        assert c["agreement"]["mean_cosine"] == pytest.approx([1.0, 1.0])
        assert c["original"] == c["compressed"]
    assert r["corruptions"]["token_dropout"]["original"]["stability"][0] < 1.0  # (mean pooling ignores word order)
    noisy = compare(enc, _Encoder(noise=0.5), (ids, mask), severities=(1,))
    assert noisy["clean"]["agreement"]["mean_cosine"] < 0.999


def test_errors_name_the_argument():
    model, x, y = _task(40)
    with pytest.raises(ConfigError, match="sensitivity"):
        compare(model, model, (x, y), sensitivity="all")
    with pytest.raises(ConfigError, match="corruptions"):
        compare(model, model, (x, y), corruptions=["fog"])
    with pytest.raises(ConfigError, match="severities"):
        compare(model, model, (x, y), severities=(3, 1))
    with pytest.raises(ConfigError, match="data"):
        compare(model, model, [1, 2, 3])


def test_html_section_holds_the_plots_and_tables(tmp_path):
    from torchslim.report.robustness import render_robustness_section, robustness_tables, write_robustness_html

    model, x, y = _task()
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.fc1.weight.mul_(torch.rand(other.fc1.weight.shape) > 0.5)
    few = ("gaussian_noise", "rotate")  # fewer panels: matplotlib's text layout is most of this test's time
    r = compare(model, other, (x, y), severities=(1, 2), corruptions=few)
    html = render_robustness_section(r)
    assert html.startswith("<section>") and html.endswith("</section>")
    for alt in ("accuracy vs severity per corruption", "reliability diagram", "per-class accuracy drop",
                "per-layer restore gain"):
        assert f'alt="{alt}" src="data:image/png;base64,' in html
    assert "largest drop first" in html and "<script" not in html and "http" not in html
    titles = [t[0] for t in robustness_tables(r)]
    assert titles[1] == "accuracy under corruption"
    page = write_robustness_html({"a": r, "single": robustness(model, (x, y), severities=(1,), corruptions=few)},
                                 tmp_path / "r.html")
    assert page.read_text().count("<section>") == 2
    enc = _Encoder()
    text = render_robustness_section(compare(enc, enc, _tokens(10, 12), severities=(1,)))
    assert 'alt="accuracy vs severity per corruption"' in text and "token corruption" in text


def test_cli_eval_robustness_compares_with_the_reference(tmp_path, capsys):
    import json

    import torchslim
    from torchslim.cli import main
    from torchslim.zoo import build_model

    torch.manual_seed(0)
    dense = build_model("lenet300", dataset="digits")
    torchslim.save(dense, tmp_path / "dense.safetensors")
    torchslim.save(dense, tmp_path / "same.safetensors")
    assert main(["eval", str(tmp_path / "same.safetensors"), "--dataset", "digits", "--robustness", "--reference",
                 str(tmp_path / "dense.safetensors"), "--limit", "60", "--json", "--html",
                 str(tmp_path / "rob.html")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["clean"]["agreement"] == 1.0 and out["clean"]["original"] == out["clean"]["compressed"]
    assert all(r["drop"] == 0.0 for r in out["per_class"]) and set(out["calibration"]) == {"original", "compressed"}
    assert out["corruptions"] and "restore" in out["sensitivity"]
    assert (tmp_path / "rob.html").read_text().count("<img") >= 3
    assert main(["eval", str(tmp_path / "same.safetensors"), "--dataset", "digits", "--robustness"]) == 2
    assert "--reference" in capsys.readouterr().err
