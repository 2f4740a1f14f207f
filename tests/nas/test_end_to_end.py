"""End to end on a small MNIST slice: sandwich training, the latency table,
torchslim.nas.search and the recipe stage's handler."""
from __future__ import annotations

import json

import pytest
import torch

from torchslim.core import Context, apply_stage
from torchslim.core.errors import DataError
from torchslim.nas import ElasticSupernet, LatencyTable, NASConfig, SandwichLoss, search, spearman, train_supernet
from torchslim.train import TrainConfig
from torchslim.zoo import build_model, split_train

FAST = dict(supernet_train=TrainConfig(epochs=1, max_steps_per_epoch=2, batch_size=32, lr=1e-3),
            latency_runtime="torch",
            width_mults=(0.5, 1.0), inner_mults=(0.5, 1.0),
            latency_threads=1, latency_repeats=3, validate_proxy=3, population=4, generations=2, parents=2,
            holdout=200, bn_batches=2, confirm_top=3)


@pytest.fixture(scope="module")
def data(mnist_small):
    return split_train(mnist_small[0], 300, seed=0)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model("resnet8", dataset="mnist").eval()


X = (torch.rand(1, 1, 28, 28),)


def test_sandwich_draws_the_same_subnets_per_step(model):
    sn = ElasticSupernet(model)
    a, b = SandwichLoss(sn, seed=3), SandwichLoss(sn, seed=3)
    a.step = b.step = 17
    assert a.configs() == b.configs()
    assert a.configs()[0] == sn.min_config() and len(a.configs()) == 3
    b.step = 18
    assert a.configs()[1:] != b.configs()[1:]


def test_sandwich_training_moves_shared_weights_and_keeps_largest(model, data):
    train, _ = data
    sn = ElasticSupernet(model)
    before = sn.net.fc.weight.detach().clone()
    res = train_supernet(sn, train, TrainConfig(epochs=1, max_steps_per_epoch=2, batch_size=32),
                         progress=False)
    assert len(res.history) == 1 and res.history[0]["train_loss"] > 0
    assert not torch.equal(before, sn.net.fc.weight)
    assert sn.config == sn.max_config()


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1, 2, 3) vs (1, 3, 2): 1 - 6 * 2 / (3 * 8)
    assert spearman([0.1, 0.2, 0.3], [5, 9, 7]) == pytest.approx(0.5)


def test_latency_table_sums_units_and_skips_skipped_blocks(model):
    sn = ElasticSupernet(model)
    sets = [(torch.rand(1, 1, 28, 28),), (torch.rand(8, 1, 28, 28),)]
    table = LatencyTable(sn, sets, runtime="torch", threads=1, repeats=2, warmup=1)
    cfg = {**sn.max_config(), "depth.layer1.0": 0}
    units = table.unit_latencies(cfg)
    assert [u for u, _ in units] == ["stem", "layer1.0", "layer2.0", "layer3.0", "head"]
    assert units[1][1] == [0.0, 0.0]  # skipped block
    over = table.call_overhead()
    assert table.raw(cfg) == pytest.approx([over[j] + sum(max(ms[j] - over[j], 0) for _, ms in units if any(ms))
                                            for j in range(2)])
    n = len(table.entries)
    table.raw({**cfg, "width.layer1.0.mid": 4})  # moot choice: same keys, nothing timed
    assert len(table.entries) == n
    table.calibrate([sn.max_config(), sn.min_config()])
    assert all(b > 0 for b in table.scale)
    again = LatencyTable(sn, sets, runtime="torch", threads=1).load_dict(table.to_dict())
    assert again.entries == table.entries


def test_search_end_to_end_meets_the_budget(model, data, tmp_path):
    """Real measurements (eager torch, one thread)."""
    train, holdout = data
    res = search(model, train, holdout, config=NASConfig(speedup=1.2, **FAST), example_inputs=X, out_dir=tmp_path,
                 progress=False)
    assert res.search.confirmed is not None and res.search.confirmations[-1]["ok"]
    assert min(res.search.confirmations[-1]["measured_speedup"]) >= 1.2
    assert all(c.cost <= 1.0 for c in res.search.history if c.score is not None)
    assert res.latency["proxy_validation"]["n"] == 3
    assert res.model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert (tmp_path / "latency_table.json").is_file() and (tmp_path / "search.json").is_file()
    again = search(model, train, holdout, config=NASConfig(speedup=1.2, **FAST), example_inputs=X, out_dir=tmp_path,
                   progress=False)  # resumes: supernet checkpoint, table, finished search
    assert again.config == res.config


def test_recipe_handler_returns_the_plain_subnet(model, data, tmp_path):
    train, holdout = data
    cfg = NASConfig(speedup=None, budget_ms=[1e9], algorithm="tpe", trials=3, **{**FAST, "validate_proxy": 0})
    ctx = Context(train_data=train, calib_data=holdout, example_inputs=X, stage_out=tmp_path,
                  progress=False)
    out = apply_stage(model, cfg, ctx)
    assert type(out.model) is type(model) and out.artifact is None
    assert out.records["nas"]["search"]["algorithm"] == "tpe"
    assert set(out.records["nas"]["config"]) == set(out.records["nas"]["space"])
    json.dumps(out.records)  # JSON-able facts for the stage record
    with pytest.raises(DataError, match="data.holdout"):
        apply_stage(model, cfg, Context(train_data=train))


def test_recipe_stage_runs_and_its_artifact_loads(tmp_path):
    from torchslim.artifact import load
    from torchslim.recipe import run_recipe

    stage = {"name": "nas", "kind": "nas.search", **NASConfig(speedup=None, budget_ms=[1e9], algorithm="tpe", trials=2,
                                                              **{**FAST, "validate_proxy": 0}).changed()}
    recipe = {"name": "nas-tiny", "model": {"zoo": "resnet8"}, "measure": {"latency": False},
              "data": {"dataset": "mnist", "holdout": 200, "train_limit": 1200, "test_limit": 200},
              "stages": [stage]}
    report = run_recipe(recipe, tmp_path / "run", progress=False, html=False)
    sub = load(tmp_path / "run" / report["artifact"])
    assert type(sub).__name__ == "ResNetSmall"
    assert report["final"]["params"] == sum(p.numel() for p in sub.parameters()) <= report["baseline"]["params"]
