"""N:M masks: every group of M along the input dimension has at most N
non-zeros; the mask equals a plain per-group reference."""
import pytest
import torch
import torch.nn as nn

from torchslim.core import ConfigError
from torchslim.prune import check_nm, nm, nm_mask


def reference_nm(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Slow loop: for each output row (and kernel position), for each group of M
    input indices, keep the N largest |w|."""
    keep = torch.zeros_like(w, dtype=torch.bool)
    cin = w.shape[1]
    positions = [()] if w.dim() == 2 else list(torch.cartesian_prod(*[torch.arange(k) for k in w.shape[2:]]).reshape(-1, w.dim() - 2).tolist())
    for o in range(w.shape[0]):
        for pos in positions:
            for g in range(0, cin, m):
                idx = list(range(g, min(g + m, cin)))
                vals = [abs(float(w[(o, i, *pos)])) for i in idx]
                order = sorted(range(len(idx)), key=lambda j: -vals[j])[:n]
                for j in order:
                    keep[(o, idx[j], *pos)] = True
    return keep


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
def test_linear_and_conv_masks_match_reference(n, m):
    torch.manual_seed(0)
    for w in (torch.randn(6, 24), torch.randn(5, 16, 3, 3), torch.randn(4, 10)):  # 10: a short last group
        keep = nm_mask(w.abs(), n, m)
        assert torch.equal(keep, reference_nm(w, n, m))
        assert check_nm(w * keep, n, m)


def test_every_group_has_at_most_n_nonzeros_after_nm_on_a_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 12), nn.Linear(12, 5))
    nm(model, 2, 4)
    for layer in (model[0], model[3], model[4]):
        w = layer.weight
        assert check_nm(w, 2, 4)
        # explicit: groups along dim 1 (input) of the (rows, in) view
        v = w.permute(0, 2, 3, 1).reshape(-1, w.shape[1]) if w.dim() == 4 else w
        pad = (-v.shape[1]) % 4
        v = torch.cat([v, torch.zeros(v.shape[0], pad)], 1)
        assert ((v.reshape(v.shape[0], -1, 4) != 0).sum(-1) <= 2).all()
        assert abs(float((w == 0).float().mean()) - 0.5) < 0.1
    out = model(torch.randn(2, 8, 6, 6))
    assert out.shape == (2, 5)


def test_check_nm_detects_violation_and_bad_n():
    w = torch.ones(2, 8)
    assert not check_nm(w, 2, 4)
    w[:, ::2] = 0
    assert check_nm(w, 2, 4)
    with pytest.raises(ConfigError):
        nm_mask(w, 5, 4)


def test_nm_respects_existing_mask():
    from torchslim.prune import prune_to_sparsity

    torch.manual_seed(0)
    lin = nn.Linear(16, 8)
    model = nn.Sequential(lin)
    prune_to_sparsity(model, 0.7)
    before = lin.weight_mask.clone()
    nm(model, 2, 4)
    assert ((lin.weight_mask <= before)).all()
    assert check_nm(lin.weight, 2, 4)
