"""Loss functions against hand-computed (numpy) values."""
import numpy as np
import pytest
import torch

from torchslim.distill import (attention_map, attention_probs_loss, attention_transfer_loss, embedding_cosine_loss,
                               hidden_state_loss, hint_loss, soft_target_loss)


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_soft_target_loss_by_hand():
    s = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = np.array([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    T = 3.0
    ps, pt = np_softmax(s / T), np_softmax(t / T)
    expected = np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), -1)) * T * T
    got = soft_target_loss(torch.tensor(s), torch.tensor(t), T)
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_soft_target_gradient_is_T_times_prob_difference():
    # d/ds [T^2 KL] = T (p_s - p_t) / batch  (Hinton et al. eq. 2, with the T^2 factor)
    s = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 5, dtype=torch.float64)
    T = 2.5
    soft_target_loss(s, t, T).backward()
    expected = T * (torch.softmax(s.detach() / T, -1) - torch.softmax(t / T, -1)) / 4
    assert torch.allclose(s.grad, expected, atol=1e-12)


def test_soft_target_zero_when_equal():
    z = torch.randn(3, 4)
    assert float(soft_target_loss(z, z.clone(), 4.0)) == pytest.approx(0.0, abs=1e-6)


def test_hint_losses_by_hand():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[1.0, 0.0], [3.0, 8.0]])
    assert float(hint_loss(a, b, "mse")) == pytest.approx((4 + 16) / 4)
    cos0 = 1 / np.sqrt(5)
    cos1 = (9 + 32) / (5 * np.sqrt(73))
    assert float(hint_loss(a, b, "cosine")) == pytest.approx(1 - (cos0 + cos1) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="adapter"):
        hint_loss(a, torch.zeros(2, 3))


def test_attention_map_by_hand():
    f = np.random.default_rng(0).normal(size=(2, 3, 4, 5))
    q = (np.abs(f) ** 2).mean(1).reshape(2, -1)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    assert np.allclose(attention_map(torch.tensor(f)).numpy(), q)
    g = np.random.default_rng(1).normal(size=(2, 7, 4, 5))  # channel counts may differ
    qg = (g ** 2).mean(1).reshape(2, -1)
    qg = qg / np.linalg.norm(qg, axis=1, keepdims=True)
    expected = np.mean((q - qg) ** 2)  # over batch and positions, like the authors' code
    assert float(attention_transfer_loss(torch.tensor(f), torch.tensor(g))) == pytest.approx(expected)


def test_attention_probs_kl_by_hand_with_mask():
    rng = np.random.default_rng(0)
    t = np_softmax(rng.normal(size=(1, 2, 3, 3)))
    s = np_softmax(rng.normal(size=(1, 2, 3, 3)))
    kl = np.sum(t * (np.log(t) - np.log(s)), -1)  # (1, 2, 3)
    assert float(attention_probs_loss(torch.tensor(s), torch.tensor(t))) == pytest.approx(kl.mean(), rel=1e-6)
    mask = torch.tensor([[1, 1, 0]])
    assert float(attention_probs_loss(torch.tensor(s), torch.tensor(t), mask)) == pytest.approx(kl[..., :2].mean(), rel=1e-6)


def test_hidden_and_embedding_losses_by_hand():
    s = torch.tensor([[[1.0, 1.0], [0.0, 2.0]]])
    t = torch.tensor([[[0.0, 1.0], [5.0, 5.0]]])
    assert float(hidden_state_loss(s, t)) == pytest.approx((0.5 + (25 + 9) / 2) / 2)
    assert float(hidden_state_loss(s, t, torch.tensor([[1, 0]]))) == pytest.approx(0.5)
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    assert float(embedding_cosine_loss(e1, e2)) == pytest.approx(1 - 1 / np.sqrt(2))
