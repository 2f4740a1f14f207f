"""Oracle tests of the decompositions against plain numpy references."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from torchslim.decompose import cp_conv, grouped_conv, separable_conv, svd_linear, tucker2_conv


def np_conv2d(x, w, b, stride, padding, dilation=(1, 1), groups=1):
    """Plain (slow) numpy convolution, NCHW / OIHW."""
    n, c, h, wd = x.shape
    o, ig, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0], padding[0]), (padding[1], padding[1])))
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * ig:(g + 1) * ig, i * dilation[0]: i * dilation[0] + stride[0] * oh: stride[0],
                           j * dilation[1]: j * dilation[1] + stride[1] * ow: stride[1]]
                out[:, oc] += np.einsum("nchw,c->nhw", patch, w[oc, :, i, j])
        if b is not None:
            out[:, oc] += b[oc]
    return out


def run_seq_np(seq, x):
    for m in seq:
        x = np_conv2d(x, m.weight.detach().double().numpy(), None if m.bias is None else m.bias.detach().double().numpy(),
                      m.stride, m.padding, m.dilation, m.groups)
    return x


def test_numpy_conv_reference_matches_torch():
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1).double()
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    ref = np_conv2d(x.numpy(), conv.weight.detach().numpy(), conv.bias.detach().numpy(), (2, 2), (1, 1))
    assert np.allclose(conv(x).detach().numpy(), ref, atol=1e-10)


def test_svd_full_rank_reproduces_linear():
    lin = nn.Linear(12, 7)
    seq = svd_linear(lin, 7)
    x = torch.randn(5, 12)
    assert isinstance(seq, nn.Sequential) and len(seq) == 2
    assert torch.allclose(seq(x), lin(x), atol=1e-5)


@pytest.mark.parametrize("rank", [1, 3, 5])
def test_truncated_svd_error_is_the_discarded_singular_values(rank):
    lin = nn.Linear(10, 8, bias=False)
    seq = svd_linear(lin, rank)
    w = lin.weight.detach().double().numpy()
    s = np.linalg.svd(w, compute_uv=False)  # numpy reference
    w_hat = (seq[1].weight @ seq[0].weight).detach().double().numpy()
    err2 = np.sum((w - w_hat) ** 2)
    assert err2 == pytest.approx(np.sum(s[rank:] ** 2), rel=1e-4)  # Eckart-Young
    assert seq[0].weight.shape == (rank, 10) and seq[1].weight.shape == (8, rank)


def test_svd_keeps_bias():
    lin = nn.Linear(6, 4)
    seq = svd_linear(lin, 4)
    assert torch.equal(seq[1].bias, lin.bias) and seq[0].bias is None


@pytest.mark.parametrize("stride,padding,dilation", [((1, 1), (1, 1), (1, 1)), ((2, 2), (0, 1), (1, 1)), ((1, 1), (2, 2), (2, 2))])
def test_tucker_full_rank_reproduces_conv(stride, padding, dilation):
    conv = nn.Conv2d(5, 6, 3, stride=stride, padding=padding, dilation=dilation)
    seq = tucker2_conv(conv, (5, 6))
    assert [m.kernel_size for m in seq] == [(1, 1), (3, 3), (1, 1)]
    x = torch.randn(2, 5, 9, 9)
    assert torch.allclose(seq(x), conv(x), atol=1e-5)
    ref = run_seq_np(seq, x.double().numpy())
    assert np.allclose(ref, conv.double()(x.double()).detach().numpy(), atol=1e-5)


def test_truncated_tucker_is_at_least_as_good_as_numpy_hosvd():
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 10, 3, bias=False)
    r_in, r_out = 3, 4
    seq = tucker2_conv(conv, (r_in, r_out))
    w = conv.weight.detach().double().numpy()
    # the effective kernel of the three convolutions
    u_in = seq[0].weight.detach().double().numpy()[:, :, 0, 0]  # (r_in, I)
    core = seq[1].weight.detach().double().numpy()  # (r_out, r_in, k, k)
    u_out = seq[2].weight.detach().double().numpy()[:, :, 0, 0]  # (O, r_out)
    w_hat = np.einsum("or,rshw,si->oihw", u_out, core, u_in)
    # numpy HOSVD reference (truncated SVD of the mode-0 and mode-1 unfoldings)
    a = np.linalg.svd(w.reshape(10, -1), full_matrices=False)[0][:, :r_out]
    b = np.linalg.svd(w.transpose(1, 0, 2, 3).reshape(8, -1), full_matrices=False)[0][:, :r_in]
    core_ref = np.einsum("oihw,or,is->rshw", w, a, b)
    w_ref = np.einsum("or,rshw,is->oihw", a, core_ref, b)
    err, err_ref = np.linalg.norm(w - w_hat), np.linalg.norm(w - w_ref)
    assert err <= err_ref * (1 + 1e-6)
    assert err > 0  # truncated: not exact
    x = torch.randn(1, 8, 6, 6)
    expected = np_conv2d(x.double().numpy(), w_hat, None, (1, 1), (0, 0))
    assert np.allclose(seq.double()(x.double()).detach().numpy(), expected, atol=1e-8)


def test_cp_reproduces_an_exactly_low_rank_kernel():
    torch.manual_seed(0)
    o, i, k, r = 6, 5, 3, 3
    fa, fb, fc, fd = torch.randn(o, r), torch.randn(i, r), torch.randn(k, r), torch.randn(k, r)
    conv = nn.Conv2d(i, o, k, stride=2, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.einsum("or,ir,hr,wr->oihw", fa, fb, fc, fd))
    seq = cp_conv(conv, r)
    assert len(seq) == 4 and seq[1].groups == r and seq[2].groups == r
    x = torch.randn(2, i, 9, 9)
    assert torch.allclose(seq(x), conv(x), atol=1e-3 * float(conv(x).detach().abs().max()))
    assert np.allclose(run_seq_np(seq, x.double().numpy()), seq.double()(x.double()).detach().numpy(), atol=1e-8)


def test_separable_exact_when_each_input_slice_has_rank_one():
    torch.manual_seed(0)
    o, i, k = 6, 4, 3
    conv = nn.Conv2d(i, o, k, padding=1)
    with torch.no_grad():
        p, d = torch.randn(o, i), torch.randn(i, k, k)
        conv.weight.copy_(p[:, :, None, None] * d[None])
    seq = separable_conv(conv, 1)
    assert seq[0].groups == i and seq[1].kernel_size == (1, 1)
    x = torch.randn(2, i, 8, 8)
    assert torch.allclose(seq(x), conv(x), atol=1e-4)


def test_separable_multiplier_is_best_rank_m_per_slice():
    conv = nn.Conv2d(3, 5, 3, bias=False)
    m = 2
    seq = separable_conv(conv, m)
    w = conv.weight.detach().double().numpy()
    dw = seq[0].weight.detach().double().numpy()[:, 0].reshape(3, m, 9)
    pw = seq[1].weight.detach().double().numpy()[:, :, 0, 0].reshape(5, 3, m)
    for c in range(3):
        approx = pw[:, c, :] @ dw[c]
        s = np.linalg.svd(w[:, c].reshape(5, 9), compute_uv=False)
        assert np.sum((w[:, c].reshape(5, 9) - approx) ** 2) == pytest.approx(np.sum(s[m:] ** 2), rel=1e-4)


def test_grouped_exact_for_block_diagonal_kernel():
    conv = nn.Conv2d(4, 6, 3, padding=1)
    with torch.no_grad():
        conv.weight[:3, 2:] = 0
        conv.weight[3:, :2] = 0
    g = grouped_conv(conv, 2)
    x = torch.randn(1, 4, 5, 5)
    assert g.groups == 2 and torch.allclose(g(x), conv(x), atol=1e-5)


def test_bad_ranks_and_layers_are_refused():
    with pytest.raises(ValueError, match="rank"):
        svd_linear(nn.Linear(4, 3), 4)
    with pytest.raises(ValueError, match="grouped"):
        tucker2_conv(nn.Conv2d(4, 4, 3, groups=2), (2, 2))
    with pytest.raises(ValueError, match="groups"):
        grouped_conv(nn.Conv2d(3, 4, 3), 2)
