import torch

from torchslim.quantize.fakequant import FakeQuantize, lsq_fake_quantize, ste_fake_quantize
from torchslim.quantize.kernels import QuantSpec, fake_quantize


def test_ste_gradient_passes_inside_range_only():
    x = torch.tensor([-3.0, -0.4, 0.3, 0.9, 5.0], requires_grad=True)
    s, z = torch.tensor(0.25), torch.tensor(0)
    y = ste_fake_quantize(x, s, z, -4, 3)  # range [-1.0, 0.75]
    assert torch.equal(y.detach(), fake_quantize(x.detach(), s, z, -4, 3))
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]


def test_lsq_scale_gradient_matches_formula():
    """LSQ paper eq. 3: d xhat / d s = -x/s + round(x/s) inside, qmin / qmax outside (times grad scale)."""
    x = torch.tensor([-3.0, -0.4, 0.3, 0.9, 5.0])
    s = torch.tensor(0.25, requires_grad=True)
    y = lsq_fake_quantize(x, s, torch.tensor(0), -4, 3, grad_scale=0.5)
    y.sum().backward()
    want = 0.0
    for xi in x.tolist():
        v = xi / 0.25
        want += -4 if v <= -4 else 3 if v >= 3 else (-v + round(v))
    assert abs(float(s.grad) - 0.5 * want) < 1e-5


def test_fakequantize_observe_calibrate_and_lsq_switch():
    from torchslim.quantize.observers import MinMaxObserver

    spec = QuantSpec(8, signed=False, symmetric=False)
    fq = FakeQuantize(spec, observer=MinMaxObserver(spec))
    x = torch.linspace(-1, 3, 101)
    assert torch.equal(fq(x), x)  # observing, not yet quantizing
    fq.calibrate()
    assert abs(float(fq.scale) - 4 / 255) < 1e-7 and 0 < int(fq.zero_point) < 255
    y = fq(x)
    assert (y - x).abs().max() <= float(fq.scale) / 2 + 1e-6
    fq.make_learnable()
    assert isinstance(fq.scale, torch.nn.Parameter) and "scale" in dict(fq.named_parameters())
    fq(x).sum().backward()
    assert fq.scale.grad is not None
    assert set(fq.state_dict()) == {"scale", "zero_point"}


def test_dynamic_quantizes_each_batch_from_its_range():
    spec = QuantSpec(8, signed=False, symmetric=False)
    fq = FakeQuantize(spec, dynamic=True)
    for scale in (1.0, 100.0):
        x = torch.randn(64) * scale
        err = (fq(x) - x).abs().max()
        assert err <= (x.max() - x.min()) / 255 / 2 + 1e-5 * scale
