"""latency() and compare_latency(): result fields, threads restored, and a model doing
10x the work is measured clearly slower."""
import pytest
import torch
import torch.nn as nn

from torchslim.analysis import compare_latency, latency
from torchslim.core.errors import ConfigError


def _stack(n: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Linear(128, 128) for _ in range(n)])


def test_latency_fields():
    model = _stack(2).train()
    x = torch.randn(16, 128)
    r = latency(model, x, warmup=2, repeats=7)
    assert set(r) >= {"median_ms", "p90_ms", "mean_ms", "min_ms", "throughput", "batch_size", "threads", "repeats"}
    assert r["batch_size"] == 16 and r["repeats"] == 7 and r["threads"] == torch.get_num_threads()
    assert 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"]
    assert r["throughput"] == pytest.approx(16 / (r["median_ms"] / 1e3))
    assert model.training  # eval only while timing
    assert latency(model, (x,), warmup=0, repeats=1, batch_size=3)["batch_size"] == 3


def test_callable_runs_without_grad_and_threads_are_restored():
    seen = []

    def fn(x):
        seen.append((torch.is_grad_enabled(), torch.get_num_threads()))
        return x * 2

    before = torch.get_num_threads()
    r = latency(fn, torch.ones(4, 4, requires_grad=True), warmup=1, repeats=3, threads=2)
    assert r["threads"] == 2 and torch.get_num_threads() == before
    assert all(g is False and t == 2 for g, t in seen)

    def boom(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        latency(boom, torch.ones(1), threads=2)
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError):
        latency(fn, torch.ones(1), repeats=0)


def test_ten_times_the_work_is_clearly_slower():
    small, big = _stack(2), _stack(20)
    x = torch.randn(64, 128)
    r = compare_latency(big, small, x, threads=1, repeats=15, warmup=2)
    assert set(r) >= {"ratio_median", "speedup", "a_median_ms", "b_median_ms", "threads", "repeats"}
    assert r["threads"] == 1 and r["repeats"] == 15
    # 10x the work; allow a wide margin for a shared, noisy machine
    assert r["ratio_median"] > 3, r
    assert r["a_median_ms"] > 3 * r["b_median_ms"]
    assert latency(big, x, threads=1, repeats=10)["min_ms"] > 3 * latency(small, x, threads=1, repeats=10)["min_ms"]


def test_compare_same_model_is_about_even():
    model = _stack(4)
    r = compare_latency(model, model, torch.randn(32, 128), threads=1, repeats=15, warmup=2)
    assert 0.5 < r["ratio_median"] < 2.0, r


def test_keyword_inputs():
    def fn(input_ids, attention_mask):
        return input_ids * attention_mask

    r = latency(fn, {"input_ids": torch.ones(3, 8), "attention_mask": torch.ones(3, 8)}, warmup=1, repeats=3)
    assert r["batch_size"] == 3 and r["median_ms"] > 0
    c = compare_latency(fn, fn, {"input_ids": torch.ones(2, 8), "attention_mask": torch.ones(2, 8)}, repeats=3)
    assert c["batch_size"] == 2 and c["ratio_median"] > 0
