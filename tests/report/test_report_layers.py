import math

import torch
import torch.nn as nn

from torchslim.report import layer_stats, weight_histogram


def _reference(w: torch.Tensor) -> dict:
    vals = [float(v) for v in w.reshape(-1).tolist()]
    nz = [v for v in vals if v != 0.0]
    distinct = len(set(nz))
    bits = 32 if distinct > 256 else (max(1, math.ceil(math.log2(distinct))) if distinct > 1 else int(distinct > 0))
    return {"params": len(vals), "nonzero": len(nz), "sparsity": 1 - len(nz) / len(vals), "distinct": distinct,
            "bits": bits}


def test_layer_stats_against_a_plain_reference():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10), nn.Linear(10, 3),
                        nn.Linear(3, 2))
    with torch.no_grad():
        net[3].weight[net[3].weight.abs() < 0.03] = 0  # sparse, many values
        codebook = torch.tensor([-0.5, -0.1, 0.2, 0.7, 0.0])  # 4 shared non-zero values + zeros
        net[4].weight.copy_(codebook[torch.randint(0, 5, net[4].weight.shape)])
        net[5].weight.zero_()  # empty layer
    rows = {r["name"]: r for r in layer_stats(net)}
    assert list(rows) == ["0", "3", "4", "5"]
    for name in rows:
        ref = _reference(dict(net.named_modules())[name].weight.detach())
        for k, v in ref.items():
            if k == "sparsity":
                assert abs(rows[name][k] - v) < 1e-12, name
            else:
                assert rows[name][k] == v, (name, k)
    assert rows["4"]["bits"] == 2 and rows["4"]["distinct"] <= 4
    assert rows["5"]["nonzero"] == 0 and rows["5"]["bits"] == 0
    assert rows["3"]["bits"] == 32 and rows["0"]["shape"] == [4, 1, 3, 3]


def test_weight_histogram_counts_nonzero_weights_of_the_largest_layer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(50, 40), nn.Linear(40, 3))
    with torch.no_grad():
        net[0].weight[:10] = 0
    h = weight_histogram(net, bins=20)
    w = net[0].weight.detach().reshape(-1)
    assert h["layer"] == "0" and h["params"] == 2000 and h["nonzero"] == int((w != 0).sum())
    assert sum(h["counts"]) == h["nonzero"] and len(h["edges"]) == 21
    assert h["edges"][0] == float(w[w != 0].min()) and abs(h["edges"][-1] - float(w[w != 0].max())) < 1e-6
    assert "values" not in h  # 1,600 distinct values: no codebook
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([0.0, 0.25, -0.5])[torch.randint(0, 3, (40, 50))])
    h = weight_histogram(net)
    assert h["values"] == [-0.5, 0.25] and sum(h["value_counts"]) == h["nonzero"]
    assert weight_histogram(net, layer="1")["layer"] == "1" and weight_histogram(net, layer="x") is None
