import math

import numpy as np
import pytest
import torch

from torchslim.export.qweight import qrange, quantize_weight, symmetric_weight_scale


def _round_half_even(v: float) -> int:
    f = math.floor(v)
    d = v - f
    if d > 0.5 or (d == 0.5 and f % 2 == 1):
        return f + 1
    return f


def _reference(w, scale, zp, bits, axis):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    out = np.zeros(w.shape, dtype=np.int64)
    for idx in np.ndindex(*w.shape):
        c = idx[axis] if axis is not None else None
        s = float(scale[c]) if c is not None else float(scale)
        z = int(zp[c]) if c is not None else int(zp)
        v = np.float32(np.float32(w[idx]) / np.float32(s))
        out[idx] = min(max(_round_half_even(float(v)) + z, lo), hi)
    return out


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("axis", [0, 1, None])
def test_quantize_weight_matches_plain_reference(bits, axis):
    g = torch.Generator().manual_seed(bits)
    w = torch.randn(5, 7, generator=g)
    if axis is None:
        scale, zp = torch.tensor(0.02), torch.tensor(1)
    else:
        scale = torch.rand(w.shape[axis], generator=g) * 0.05 + 0.005
        zp = torch.randint(-2, 3, (w.shape[axis],), generator=g)
    got = quantize_weight(w, scale, zp, bits=bits, axis=axis)
    assert got.dtype == np.int8
    ref = _reference(w.numpy(), scale.numpy(), zp.numpy(), bits, axis)
    np.testing.assert_array_equal(got.astype(np.int64), ref)
    assert got.min() >= qrange(bits)[0] and got.max() <= qrange(bits)[1]


def test_ties_round_to_even():
    w = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5])
    np.testing.assert_array_equal(quantize_weight(w, 1.0, 0, axis=None), [0, 2, 2, 0, -2, -2])


def test_symmetric_scale_per_channel_and_zero_channel():
    w = torch.tensor([[1.0, -2.0], [0.0, 0.0], [0.5, 0.25]])
    s = symmetric_weight_scale(w, axis=0)
    torch.testing.assert_close(s, torch.tensor([2.0 / 127, 1.0, 0.5 / 127]))
    q = quantize_weight(w, s, 0, axis=0)
    assert q[0, 1] == -127 and q[2, 0] == 127 and (q[1] == 0).all()
    assert float(symmetric_weight_scale(w, axis=None)) == pytest.approx(2.0 / 127)
