"""Truncated SVD of ``nn.Linear``: W (out x in) ~ U_r S_r V_r^T becomes two
Linears, ``Linear(in, r, bias=False)`` with weight sqrt(S_r) V_r^T and
``Linear(r, out)`` with weight U_r sqrt(S_r) and the original bias. By
Eckart-Young this is the best rank-r approximation in Frobenius norm; the
squared error is the sum of the discarded squared singular values."""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["svd_linear", "linear_singular_values"]


def linear_singular_values(layer: nn.Linear) -> torch.Tensor:
    return torch.linalg.svdvals(layer.weight.detach().to(torch.float64))


@torch.no_grad()
def svd_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """Replace ``layer`` by ``nn.Sequential(Linear(in, rank), Linear(rank, out))``."""
    out_f, in_f = layer.weight.shape
    if not 1 <= rank <= min(in_f, out_f):
        raise ValueError(f"svd_linear: rank must be in 1..{min(in_f, out_f)} for a {in_f}->{out_f} Linear, got {rank}")
    w = layer.weight.detach().to(torch.float64)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = s[:rank].sqrt()
    first = nn.Linear(in_f, rank, bias=False)
    second = nn.Linear(rank, out_f, bias=layer.bias is not None)
    dtype, device = layer.weight.dtype, layer.weight.device
    first.weight.copy_((root[:, None] * vh[:rank]).to(dtype))
    second.weight.copy_((u[:, :rank] * root[None, :]).to(dtype))
    if layer.bias is not None:
        second.bias.copy_(layer.bias.detach())
    return nn.Sequential(first, second).to(device)
