import numpy as np
import pytest
import torch

from torchslim.core.errors import ConfigError
from torchslim.quantize.kernels import QuantSpec, expand_param, fake_quantize, qparams_from_range
from torchslim.quantize.observers import (KLObserver, MinMaxObserver, MovingAverageObserver, MSEObserver,
                                          PercentileObserver, kl_threshold, make_observer, mse_range, weight_qparams)

ACT = QuantSpec(8, signed=False, symmetric=False)


def test_minmax_and_moving_average():
    a, b = torch.tensor([-1.0, 2.0]), torch.tensor([-3.0, 1.0])
    mm = MinMaxObserver(ACT)
    ma = MovingAverageObserver(ACT, momentum=0.5)
    for x in (a, b):
        mm.observe(x)
        ma.observe(x)
    assert mm.range() == (-3.0, 2.0)
    lo, hi = ma.range()
    assert float(lo) == pytest.approx(-2.0) and float(hi) == pytest.approx(1.5)


def test_per_channel_minmax():
    spec = QuantSpec(8, granularity="channel")
    o = MinMaxObserver(spec)
    x = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    o.observe(x)
    lo, hi = o.range()
    assert lo.tolist() == [-2.0, 3.0] and hi.tolist() == [1.0, 4.0]


def test_percentile_matches_numpy():
    x = torch.randn(10000, generator=torch.Generator().manual_seed(0))
    o = PercentileObserver(ACT, percentile=99.0)
    o.observe(x)
    lo, hi = o.range()
    assert float(hi) == pytest.approx(np.percentile(x.numpy(), 99.0), rel=1e-5)
    assert float(lo) == pytest.approx(np.percentile(x.numpy(), 1.0), rel=1e-5)


def test_mse_range_is_grid_optimal():
    """The MSE observer's clip beats every other clip on the same grid (brute-force oracle)."""
    torch.manual_seed(0)
    x = torch.distributions.Laplace(0.0, 1.0).sample((20000,))
    x[0] = 40.0  # an outlier min/max would waste the range on
    spec = QuantSpec(4, signed=True, symmetric=True)
    lo, hi = mse_range(x, spec, grid=50)

    def err(l, h):
        s, z = qparams_from_range(l, h, spec)
        return float(((fake_quantize(x, s, z, spec.qmin, spec.qmax) - x) ** 2).sum())

    best = err(lo, hi)
    for a in torch.linspace(0.2, 1.0, 50):
        assert best <= err(x.min() * a, x.max() * a) + 1e-6
    assert best < err(x.min(), x.max()) * 0.5
    o = MSEObserver(spec)
    o.observe(x)
    assert torch.allclose(torch.stack(o.range()), torch.stack(mse_range(x, spec)))


def test_mse_per_channel_weights():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 50, generator=g)
    w[0, 0] = 30
    spec = QuantSpec(4, granularity="channel")
    s_mm, _ = weight_qparams(w, spec, "minmax")
    s_mse, z = weight_qparams(w, spec, "mse")
    assert s_mse.shape == (8,) and torch.all(s_mse <= s_mm + 1e-9)
    def e(s):
        return ((fake_quantize(w, expand_param(s, w, spec), expand_param(z, w, spec), -8, 7) - w) ** 2).sum(1)
    assert torch.all(e(s_mse) <= e(s_mm) + 1e-6)


def ref_kl(values, levels, bins, stride):
    a = np.abs(values)
    a = a[a > 0]
    hist, edges = np.histogram(a, bins=bins, range=(0, a.max()))
    best = (np.inf, bins)
    for i in range(levels, bins + 1, stride):
        p = [float(h) for h in hist[:i]]
        p[-1] += float(hist[i:].sum())
        q = [0.0] * i
        for j in range(levels):
            members = [k for k in range(i) if int(k * levels // i) == j]
            total = sum(float(hist[k]) for k in members)
            nz = [k for k in members if hist[k] > 0]
            for k in nz:
                q[k] = total / len(nz)
        ps, qs = sum(p), sum(q)
        kl = sum((pk / ps) * np.log((pk / ps) / max(qk / qs, 1e-12)) for pk, qk in zip(p, q) if pk > 0)
        if kl < best[0]:
            best = (kl, i)
    return edges[best[1]]


def test_kl_threshold_matches_reference():
    x = np.random.default_rng(0).standard_normal(4000).clip(min=0)
    assert kl_threshold(x, 15, bins=128, stride=3) == pytest.approx(ref_kl(x, 15, 128, 3))
    o = KLObserver(ACT)
    o.observe(torch.from_numpy(x).float())
    lo, hi = o.range()
    assert float(lo) == 0.0 and 0 < float(hi) <= x.max()


def test_kl_asymmetric_keeps_a_one_sided_spike():
    """A normalised image: background spike at -0.42, digits spread up to 2.8.
    The negative side must not be clipped (that would erase the background)."""
    g = torch.Generator().manual_seed(0)
    x = torch.full((20000,), -0.4242)
    x[:4000] = torch.rand(4000, generator=g) * 3.2 - 0.4242
    o = KLObserver(ACT)
    o.observe(x)
    lo, hi = o.range()
    assert float(lo) <= float(x.min()) + 1e-6 and 0.5 < float(hi) <= float(x.max()) + 1e-6


def test_unknown_observer_and_empty():
    with pytest.raises(ConfigError, match="use one of"):
        make_observer("nope", ACT)
    with pytest.raises(ConfigError, match="saw no data"):
        MinMaxObserver(ACT).qparams()
    with pytest.raises(ConfigError, match="per-tensor"):
        KLObserver(QuantSpec(8, granularity="channel"))
