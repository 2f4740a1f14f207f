"""Embedding fidelity against a plain numpy reference (the oracle), and on
real models: a model against itself, and MiniLM against a 3-layer copy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from torchslim.analysis.fidelity import embed, embedding_fidelity, fidelity, nearest_neighbours, pool


def _numpy_reference(emb: np.ndarray, ref: np.ndarray) -> dict:
    def unit(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    cos = (unit(emb) * unit(ref)).sum(1)

    def nearest(a):
        n = len(a)
        out = []
        for i in range(n):  # the most cosine-similar other row, first on ties
            best, best_j = -np.inf, -1
            for j in range(n):
                if j != i:
                    s = float(unit(a)[i] @ unit(a)[j])
                    if s > best:
                        best, best_j = s, j
            out.append(best_j)
        return np.array(out)

    return {"mean_cosine": cos.mean(), "min_cosine": cos.min(),
            "nn_agreement": (nearest(emb) == nearest(ref)).mean()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fidelity_matches_a_numpy_oracle(seed):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(40, 8)) * rng.uniform(0.5, 3, size=(40, 1))  # unnormalised, varied norms
    emb = ref + rng.normal(scale=0.6, size=ref.shape)
    got = fidelity(torch.tensor(emb, dtype=torch.float64), torch.tensor(ref, dtype=torch.float64))
    want = _numpy_reference(emb, ref)
    assert got["n"] == 40
    for k, v in want.items():
        assert got[k] == pytest.approx(float(v), abs=1e-6), k
    assert 0.0 < got["nn_agreement"] < 1.0  # the noise moves some neighbours, not all


def test_edge_cases():
    e = torch.eye(3)
    assert nearest_neighbours(e).tolist() == [1, 0, 0]  # all ties: the lowest other index
    assert fidelity(e, e) == {"n": 3, "mean_cosine": 1.0, "min_cosine": 1.0, "nn_agreement": 1.0}
    assert fidelity(-e, e)["min_cosine"] == -1.0
    with pytest.raises(ValueError, match="equal"):
        fidelity(torch.zeros(3, 2), torch.zeros(4, 2))
    tokens = torch.ones(2, 3, 4)
    tokens[0, 2] = 100.0
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.equal(pool(tokens, mask)[0], torch.ones(4))  # the padded token is left out


def test_real_encoders(minilm_model):
    from torchslim.zoo import build_model
    from torchslim.zoo.user_data import TextDataset
    from torchslim.export.inputs import token_batch

    ids, mask = token_batch(["The cat sat on the mat.", "Dogs bark at night.", "Stock prices fell today.",
                             "A kitten slept on the rug.", "Markets dropped sharply."])
    data = TextDataset(ids, torch.zeros(len(ids), dtype=torch.long), "s", "all", mask)
    same = embedding_fidelity(minilm_model, minilm_model, data, batch_size=2)
    assert same["min_cosine"] > 0.9999 and same["nn_agreement"] == 1.0
    short = build_model("minilm", num_layers=3).eval()
    r = embedding_fidelity(minilm_model, short, (ids, mask))
    assert r["mean_cosine"] < same["mean_cosine"]
    assert torch.allclose(embed(short, data), embed(short, [(ids, mask)]))
