"""random_shift against a per-sample loop reference, and fit's use of it."""
import pytest
import torch

from torchslim.core.errors import ConfigError
from torchslim.train import TrainConfig, fit
from torchslim.train.augment import random_shift
from torchslim.zoo.data import ArrayDataset


def _reference_2d(x, shift, offs):
    out = torch.zeros_like(x)
    h, w = x.shape[2:]
    for n in range(x.shape[0]):
        dy, dx = int(offs[n, 0]) - shift, int(offs[n, 1]) - shift
        for i in range(h):
            for j in range(w):
                si, sj = i + dy, j + dx
                if 0 <= si < h and 0 <= sj < w:
                    out[n, :, i, j] = x[n, :, si, sj]
    return out


def test_shift_2d_matches_loop_reference():
    x = torch.randn(6, 3, 7, 5)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    got = random_shift(x, 2, g1)
    offs = torch.randint(0, 5, (6, 2), generator=g2)
    torch.testing.assert_close(got, _reference_2d(x, 2, offs), rtol=0, atol=0)


def test_shift_1d_and_zero_and_mass():
    x = torch.arange(10.0).reshape(1, 1, 10).repeat(4, 2, 1)
    g = torch.Generator().manual_seed(0)
    y = random_shift(x, 3, g)
    assert y.shape == x.shape
    for n in range(4):  # each row is a shifted copy: a contiguous run of the original values
        row = y[n, 0]
        nz = row[row != 0]
        assert torch.all(nz[1:] - nz[:-1] == 1)
        assert torch.equal(y[n, 0], y[n, 1])
    assert random_shift(x, 0) is x
    with pytest.raises(ConfigError, match="shift"):
        random_shift(torch.randn(4, 10), 1)
    with pytest.raises(ConfigError, match="shift"):
        TrainConfig(shift=-1)


def test_fit_with_shift_is_deterministic_and_changes_training():
    torch.manual_seed(0)
    data = ArrayDataset(torch.rand(64, 1, 8, 8), torch.randint(0, 3, (64,)))

    def run(shift):
        torch.manual_seed(1)
        m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
        fit(m, data, TrainConfig(epochs=2, batch_size=16, shift=shift), progress=False)
        return m[1].weight.detach().clone()

    a, b, c = run(1), run(1), run(0)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
