"""Rank selection: by an energy threshold on singular values, by a target
fraction of the layer's parameters kept, or per layer from a sensitivity scan
(the smallest kept fraction whose accuracy drop on calibration data stays
within a tolerance). Plus the MAC count used to skip a layer whose
decomposition would not reduce MACs."""
from __future__ import annotations

import copy
import math
from typing import Callable, Iterable, Sequence

import torch
import torch.nn as nn

__all__ = ["energy_rank", "svd_rank_for_keep", "tucker_ranks_for_keep", "cp_rank_for_keep", "tucker_energy_ranks",
           "module_macs", "input_sizes", "sensitivity_keeps"]


def energy_rank(singular_values: torch.Tensor, energy: float) -> int:
    """Smallest r with sum_{k<r} s_k^2 >= energy * sum s_k^2."""
    if not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    e = singular_values.detach().to(torch.float64).pow(2)
    total = float(e.sum())
    if total == 0:
        return 1
    cum = torch.cumsum(e, 0) / total
    return int(min(len(e), int((cum < energy - 1e-12).sum()) + 1))


def svd_rank_for_keep(in_features: int, out_features: int, keep: float) -> int:
    """Largest rank whose two factors hold at most ``keep`` of in*out weights."""
    return max(1, min(min(in_features, out_features), int(math.floor(keep * in_features * out_features / (in_features + out_features)))))


def _tucker_params(i: int, o: int, k: int, r_in: int, r_out: int) -> int:
    return i * r_in + r_in * r_out * k + r_out * o


def tucker_ranks_for_keep(in_channels: int, out_channels: int, kernel_area: int, keep: float) -> tuple[int, int]:
    """(r_in, r_out) proportional to the channel counts, the largest whose
    three convolutions hold at most ``keep`` of the kernel's weights."""
    budget = keep * in_channels * out_channels * kernel_area
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        r_in, r_out = max(1, round(mid * in_channels)), max(1, round(mid * out_channels))
        if _tucker_params(in_channels, out_channels, kernel_area, r_in, r_out) <= budget:
            lo = mid
        else:
            hi = mid
    return max(1, round(lo * in_channels)), max(1, round(lo * out_channels))


def tucker_energy_ranks(weight: torch.Tensor, energy: float) -> tuple[int, int]:
    """(r_in, r_out) from the energy of the mode-1 and mode-0 unfoldings."""
    w = weight.detach().to(torch.float64)
    o, i = w.shape[:2]
    s_out = torch.linalg.svdvals(w.reshape(o, -1))
    s_in = torch.linalg.svdvals(w.transpose(0, 1).reshape(i, -1))
    return energy_rank(s_in, energy), energy_rank(s_out, energy)


def cp_rank_for_keep(in_channels: int, out_channels: int, kh: int, kw: int, keep: float) -> int:
    return max(1, int(math.floor(keep * in_channels * out_channels * kh * kw / (in_channels + out_channels + kh + kw))))


def _conv_out(hw: tuple[int, int], conv: nn.Conv2d) -> tuple[int, int]:
    out = []
    for d in range(2):
        size = hw[d] + 2 * conv.padding[d] - conv.dilation[d] * (conv.kernel_size[d] - 1) - 1
        out.append(size // conv.stride[d] + 1)
    return out[0], out[1]


def module_macs(module: nn.Module, in_hw: tuple[int, int] | None = None) -> int:
    """Multiply-accumulates of a Linear (per input row), a Conv2d (for input
    size ``in_hw``) or a Sequential chain of them."""
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    if isinstance(module, nn.Conv2d):
        hw = in_hw or (1, 1)
        oh, ow = _conv_out(hw, module)
        kh, kw = module.kernel_size
        return module.out_channels * (module.in_channels // module.groups) * kh * kw * oh * ow
    if isinstance(module, nn.Sequential):
        total, hw = 0, in_hw
        for m in module:
            total += module_macs(m, hw)
            if isinstance(m, nn.Conv2d) and hw is not None:
                hw = _conv_out(hw, m)
        return total
    raise TypeError(f"module_macs: unsupported module {type(module).__name__}")


def input_sizes(model: nn.Module, example_inputs: tuple, names: Iterable[str]) -> dict[str, tuple[int, int]]:
    """Spatial input size (H, W) of each named Conv2d for ``example_inputs``."""
    from ..core.hooks import layer_inputs

    modules = dict(model.named_modules())
    convs = [n for n in names if isinstance(modules.get(n), nn.Conv2d)]
    return layer_inputs(model, convs, example_inputs, keep=lambda x: tuple(x.shape[-2:]))


def sensitivity_keeps(model: nn.Module, names: Sequence[str], build: Callable[[nn.Module, float], nn.Module | None],
                      score: Callable[[nn.Module], float], *, candidates: Sequence[float] = (0.05, 0.1, 0.2, 0.3, 0.5),
                      tolerance: float = 0.005) -> dict[str, float | None]:
    """Per layer, decompose it alone at each kept fraction (smallest first) and
    keep the first whose score (e.g. calibration accuracy) drops by at most
    ``tolerance``; None when no candidate does (the layer is left intact)."""
    from ..artifact.specs import set_submodule

    base = score(model)
    out: dict[str, float | None] = {}
    for name in names:
        out[name] = None
        for keep in sorted(candidates):
            trial = copy.deepcopy(model)
            new = build(trial.get_submodule(name), keep)
            if new is None:
                continue
            set_submodule(trial, name, new)
            if base - score(trial) <= tolerance:
                out[name] = keep
                break
    return out
