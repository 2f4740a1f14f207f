"""Oracle tests: the quantization kernel against a plain, slow, per-element reference."""
import math

import numpy as np
import pytest
import torch

from torchslim.quantize.kernels import (QuantSpec, expand_param, fake_quantize, pow2_quantize, qparams_from_range,
                                        qrange, quantize, reduce_minmax)


def ref_quantize(x, scale, zp, qmin, qmax):
    """Element by element in float32 (like the kernel), Python's round (half to even)."""
    out = np.empty(x.shape, dtype=np.float32)
    xf, sf, zf = x.numpy(), scale.expand_as(x).numpy(), zp.expand_as(x).numpy()
    for idx in np.ndindex(x.shape):
        v = np.float32(xf[idx]) / np.float32(sf[idx]) + np.float32(zf[idx])
        q = round(float(v))
        out[idx] = min(max(q, qmin), qmax)
    return torch.from_numpy(out)


def ref_qparams(lo, hi, bits, signed, symmetric):
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if symmetric:
        return max(max(-lo, hi) / qmax, 1e-8), 0
    s = max((hi - lo) / (qmax - qmin), 1e-8)
    z = min(max(qmin - round(lo / s), qmin), qmax)
    return s, z


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("signed", [True, False])
def test_qrange(bits, signed):
    lo, hi = qrange(bits, signed)
    assert hi - lo == 2 ** bits - 1
    assert (lo < 0) == signed


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("signed,symmetric", [(True, True), (False, False), (True, False)])
def test_quantize_matches_reference(bits, signed, symmetric):
    g = torch.Generator().manual_seed(bits)
    x = torch.randn(6, 7, generator=g) * 3
    # exact ties (x/scale = k + 0.5) must round half to even, as ONNX does
    x[0, :4] = torch.tensor([0.25, 0.75, -0.25, 1.25])
    spec = QuantSpec(bits, signed=signed, symmetric=symmetric)
    lo, hi = float(x.min()), float(x.max())
    s_ref, z_ref = ref_qparams(lo, hi, bits, signed, symmetric)
    s, z = qparams_from_range(torch.tensor(lo), torch.tensor(hi), spec)
    assert math.isclose(float(s), s_ref, rel_tol=1e-6) and int(z) == z_ref
    for scale, zp in [(s, z), (torch.tensor(0.5), torch.tensor(0, dtype=torch.int32) + (0 if symmetric else spec.qmin + 2 ** (bits - 1)))]:
        q = quantize(x, scale, zp, spec.qmin, spec.qmax)
        assert torch.equal(q, ref_quantize(x, scale, zp.float(), spec.qmin, spec.qmax))
        fq = fake_quantize(x, scale, zp, spec.qmin, spec.qmax)
        assert torch.allclose(fq, (q - zp.float()) * scale)


def test_ties_round_half_even():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5])
    q = quantize(x, torch.tensor(1.0), torch.tensor(0), -8, 7)
    assert q.tolist() == [0.0, 2.0, 2.0, -0.0, -2.0]


@pytest.mark.parametrize("gran,gs", [("channel", 0), ("group", 4), ("group", 5)])
def test_per_channel_and_group_match_reference(gran, gs):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 2, 3, 2, generator=g)  # 12 elements per row: groups of 4, and 5 (last one short)
    spec = QuantSpec(4, signed=True, symmetric=True, granularity=gran, group_size=gs)
    lo, hi = reduce_minmax(w, spec)
    scale, zp = qparams_from_range(lo, hi, spec)
    got = fake_quantize(w, expand_param(scale, w, spec), expand_param(zp, w, spec), spec.qmin, spec.qmax)
    rows = w.reshape(3, -1)
    ref = torch.empty_like(rows)
    for r in range(3):
        units = [list(range(12))] if gran == "channel" else [list(range(i, min(i + gs, 12))) for i in range(0, 12, gs)]
        for u in units:
            vals = rows[r, u]
            s_ref, _ = ref_qparams(float(vals.min()), float(vals.max()), 4, True, True)
            for j in u:
                q = round(float(np.float32(rows[r, j]) / np.float32(s_ref)))
                ref[r, j] = float(min(max(q, -8), 7) * np.float32(s_ref))
    assert torch.allclose(got.reshape(3, -1), ref, atol=1e-6)


def test_pow2_matches_reference():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(200, generator=g)
    bits, max_abs = 4, float(x.abs().max())
    got = pow2_quantize(x, bits, max_abs)
    emax = round(math.log2(max_abs))
    levels = [2.0 ** e for e in range(emax - (2 ** (bits - 1) - 1) + 1, emax + 1)]
    for xi, gi in zip(x.tolist(), got.tolist()):
        m = abs(xi)
        if m < levels[0] / 2:
            want = 0.0
        else:
            e = min(max(round(math.log2(m)), math.log2(levels[0])), math.log2(levels[-1]))
            want = math.copysign(2.0 ** e, xi)
        assert gi == want
    assert len(set(got.abs().tolist()) - {0.0}) <= 2 ** (bits - 1) - 1
