"""Smoke test of the issue-12 harness (benchmarks/bench_hf_suite.py): one
small suite model, two timing pairs; the records' fields, and torchslim's
plain call handling the model (FLOPs goal, shape, reload)."""
import pytest
import torch

from benchmarks import bench_hf_suite as bench


def test_helpers():
    ids, mask = torch.arange(6).view(2, 3), torch.ones(2, 3, dtype=torch.long)
    assert [t.shape for t in bench.first_row((ids, mask))] == [(1, 3), (1, 3)]
    assert bench.first_row({"input_ids": ids})["input_ids"].shape == (1, 3)
    assert bench.is_text((ids, mask)) and not bench.is_text((torch.randn(2, 3),))
    assert bench.error_text(ValueError("first\nsecond")) == "ValueError: first"
    assert bench.handled("torch-pruning", {"output_shape_unchanged": True, "output_finite": True})
    assert not bench.handled("torchslim", {"output_shape_unchanged": True, "output_finite": True, "flops_ratio": 0.5})


def test_bench_model_records_both_tools():
    pytest.importorskip("transformers")
    has_tp = True
    try:
        import torch_pruning  # noqa: F401
    except ImportError:
        has_tp = False
    tools = bench.TOOLS if has_tp else ("torchslim",)
    res = bench.bench_model("resnet", pairs=2, tools=tools)
    assert res["family"] == "cnn" and res["reference"]["output_shape"] == [2, 10]
    for tool in tools:
        r = res[tool]
        assert "seconds" in r and ("error" in r or "handled" in r)
    assert res["torchslim"]["handled"] and res["torchslim"]["flops_ratio"] <= bench.FLOPS_GOAL
    if has_tp:  # pinned Torch-Pruning 1.6.1 handles the HF ResNet plainly
        r = res["torch-pruning"]
        assert r["ignored_layers"] == ["classifier.1"] and r["handled"]
        assert r["flops_ratio"] < 1.0 and r["latency_b1"]["pairs"] == 2
    assert set(bench.summary({"resnet": res})) == set(bench.TOOLS)
