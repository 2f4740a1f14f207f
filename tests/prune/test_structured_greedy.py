"""allocation="greedy": measured one-step-at-a-time channel allocation
(NetAdapt-style), checked against synthetic time functions whose optimum is
known, then once with real ONNX Runtime timing."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from torchslim.core import Context, apply
from torchslim.core.errors import ConfigError, ModelError
from torchslim.core.scope import Scope
from torchslim.prune import StructuredConfig, count_cost, structured


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).eval()


X = (torch.rand(4, 64),)


def _widths(net):
    return net[0].out_features, net[2].out_features


def _cost(net, slow=10.0):
    """Synthetic time: the second hidden layer's units cost ``slow`` times the first's."""
    a, b = _widths(net)
    return 1.0 * a + slow * b


def test_greedy_cuts_only_where_time_is_saved_and_meets_the_target():
    calls = {"time": 0, "confirm": 0}

    def time_fn(net):
        calls["time"] += 1
        return [_cost(net)]

    def confirm(ref, cand):
        calls["confirm"] += 1
        return _cost(ref) / _cost(cand)

    m = _mlp()
    p = structured(m, X, ratio=0.3, target="latency", allocation="greedy", time_fn=time_fn, latency_fn=confirm,
                   scope=Scope(exclude_names=("4",)))
    a, b = _widths(p)
    assert a == 64 and b < 64  # the cheap layer is left alone
    assert _cost(m) / _cost(p) >= 1 / 0.7
    info = p.torchslim_structured["greedy"]
    assert all(s["group"].startswith("2") for s in info["steps"])
    assert calls["confirm"] == 1 and info["confirmed_speedup"] == pytest.approx(_cost(m) / _cost(p))
    # the last step was needed: one step less would miss the target
    prev = info["steps"][-1]["from"]
    assert _cost(m) / (64 + 10.0 * prev) < 1 / 0.7
    assert p(*X).shape == (4, 10)


def test_greedy_with_a_mac_target_cuts_the_cheap_layer_too():
    m = _mlp()
    macs0 = count_cost(m, X, "macs")
    p = structured(m, X, ratio=0.2, target="latency", allocation="greedy", mac_ratio=0.6,
                   time_fn=lambda net: [_cost(net)], latency_fn=lambda r, c: _cost(r) / _cost(c),
                   scope=Scope(exclude_names=("4",)))
    assert 1 - count_cost(p, X, "macs") / macs0 >= 0.6
    assert _cost(m) / _cost(p) >= 1 / 0.8
    assert _widths(p)[0] < 64  # MACs only: the time target alone would not have touched it
    assert p.torchslim_structured["greedy"]["mac_reduction"] >= 0.6


def test_greedy_trusts_the_paired_confirmation_over_its_own_timing():
    """The quick timing says fast enough; the paired check says 10% slower:
    the search must go on until the paired check agrees."""
    seen = []

    def confirm(ref, cand):
        s = 0.9 * _cost(ref) / _cost(cand)
        seen.append(s)
        return s

    m = _mlp()
    p = structured(m, X, ratio=0.3, target="latency", allocation="greedy", time_fn=lambda net: [_cost(net)],
                   latency_fn=confirm, scope=Scope(exclude_names=("4",)))
    assert len(seen) >= 2 and seen[-1] >= 1 / 0.7 and min(seen[:-1]) < 1 / 0.7
    assert 0.9 * _cost(m) / _cost(p) >= 1 / 0.7


def test_greedy_errors_name_the_problem():
    m = _mlp()
    with pytest.raises(ModelError, match="no further cut saves time"):
        structured(m, X, ratio=0.95, target="latency", allocation="greedy", time_fn=lambda net: [_cost(net)],
                   latency_fn=lambda r, c: _cost(r) / _cost(c), scope=Scope(exclude_names=("4",)))
    with pytest.raises(ConfigError, match="target 'latency'"):
        structured(m, X, ratio=0.3, target="macs", allocation="greedy")
    with pytest.raises(ConfigError, match="mac_ratio"):
        structured(m, X, ratio=0.3, target="macs", mac_ratio=0.5)
    with pytest.raises(ConfigError, match="allocation 'greedy'"):
        StructuredConfig(allocation="greedy", target="macs")
    with pytest.raises(ConfigError, match="mac_ratio"):
        StructuredConfig(mac_ratio=0.5)


def test_greedy_times_onnx_runtime_for_real_through_the_config():
    """The recipe stage: ONNX Runtime timing of an MLP whose hidden layer
    dominates; big greedy steps keep the test short."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(256, 2048), nn.ReLU(), nn.Linear(2048, 10)).eval()
    x = (torch.rand(64, 256),)
    from torchslim.analysis.latency import speedup_fn, time_fn

    tf = time_fn([x], runtime="onnxruntime", threads=1, repeats=9)
    ms = tf(m)
    assert len(ms) == 1 and ms[0] > 0
    p = structured(m, x, ratio=0.3, target="latency", allocation="greedy", greedy_steps=(512,), time_fn=tf,
                   latency_fn=speedup_fn([x], runtime="onnxruntime", threads=1, repeats=9),
                   scope=Scope(exclude_names=("2",)))
    assert p[0].out_features < 2048 and p(*x).shape == (64, 10)
    assert p.torchslim_structured["greedy"]["confirmed_speedup"] >= 1 / 0.7
    cfg = StructuredConfig(ratio=0.2, target="latency", allocation="greedy", mac_ratio=0.3, greedy_steps=(512,),
                           latency_runtime="onnxruntime", latency_threads=1, latency_batch_sizes=(64,),
                           scope=Scope(exclude_names=("2",)))
    assert StructuredConfig.from_yaml(cfg.to_yaml()) == cfg
    with pytest.raises(ConfigError, match="greedy_steps"):
        StructuredConfig(greedy_steps=(0,))
    q = apply(m, cfg, Context(example_inputs=(torch.rand(1, 256),), progress=False))
    assert q.torchslim_structured["allocation"] == "greedy" and q.torchslim_structured["greedy"]["mac_reduction"] >= 0.3
