"""GPTQ against the plain Optimal Brain Quantization recursion (no blocks, no
Cholesky): quantize column i, spread its error with the inverse Hessian, then
remove i from the inverse Hessian by the OBS rank-one downdate."""
import torch

from torchslim.quantize.gptq import gptq_quantize
from torchslim.quantize.kernels import QuantSpec


def ref_obq(W, H, scale, qmin, qmax, damp):
    W = W.double().clone()
    H = H.double().clone()
    K = H.shape[0]
    H += damp * torch.mean(torch.diag(H)) * torch.eye(K, dtype=torch.float64)
    Hinv = torch.linalg.inv(H)
    Q = torch.zeros_like(W)
    for i in range(K):
        for r in range(W.shape[0]):
            v = float(W[r, i]) / float(scale[r])
            Q[r, i] = min(max(round(v), qmin), qmax) * float(scale[r])
        err = (W[:, i] - Q[:, i]) / Hinv[i, i]
        for j in range(i + 1, K):
            W[:, j] -= err * Hinv[i, j]
        Hinv = Hinv - torch.outer(Hinv[:, i], Hinv[i, :]) / Hinv[i, i]
    return Q


def test_gptq_matches_obq_reference():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(6, 200, generator=g)
    X[1] = X[0] * 0.9 + 0.1 * X[1]  # correlated inputs, so error compensation matters
    H = 2 * X @ X.t() / 200
    W = torch.randn(3, 6, generator=g)
    spec = QuantSpec(3, granularity="channel")
    scale = W.abs().amax(1) / spec.qmax
    zp = torch.zeros(3, dtype=torch.int32)
    Q, _, _ = gptq_quantize(W, H, spec, scale=scale, zero_point=zp, damp=0.01, block=4)
    ref = ref_obq(W, H, scale, spec.qmin, spec.qmax, 0.01)
    assert torch.allclose(Q.double(), ref, atol=1e-5)
    # and it beats round-to-nearest on the layer-output error tr(dW H dW^T)
    rtn = torch.clamp(torch.round(W / scale[:, None]), spec.qmin, spec.qmax) * scale[:, None]

    def err(Wq):
        d = (Wq - W).double()
        return float(torch.trace(d @ H.double() @ d.t()))

    assert err(Q) < err(rtn)


def test_gptq_with_identity_hessian_is_round_to_nearest():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(4, 8, generator=g)
    spec = QuantSpec(4, granularity="group", group_size=4)
    Q, scale, zp = gptq_quantize(W, torch.eye(8), spec, damp=0.01)
    full = scale.repeat_interleave(4, dim=1)
    assert torch.allclose(Q, torch.clamp(torch.round(W / full), -8, 7) * full, atol=1e-6)
