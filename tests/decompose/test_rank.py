import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from torchslim.decompose import (cp_rank_for_keep, energy_rank, module_macs, svd_linear, svd_rank_for_keep,
                                 tucker2_conv, tucker_energy_ranks, tucker_ranks_for_keep)


def test_energy_rank_by_hand():
    s = torch.tensor([3.0, 2.0, 1.0, 0.5])  # energies 9, 4, 1, 0.25 of 14.25
    assert energy_rank(s, 9 / 14.25) == 1
    assert energy_rank(s, 0.7) == 2  # 13/14.25 = 0.912 >= 0.7 > 0.632
    assert energy_rank(s, 0.95) == 3  # 14/14.25 = 0.982
    assert energy_rank(s, 1.0) == 4
    with pytest.raises(ValueError):
        energy_rank(s, 0.0)


def test_keep_ranks_respect_the_parameter_budget():
    r = svd_rank_for_keep(300, 100, 0.25)
    assert r * 400 <= 0.25 * 30000 < (r + 1) * 400
    r_in, r_out = tucker_ranks_for_keep(32, 64, 9, 0.3)
    assert 32 * r_in + 9 * r_in * r_out + 64 * r_out <= 0.3 * 32 * 64 * 9
    assert abs(r_out / r_in - 2) < 0.3  # proportional to the channel counts
    r = cp_rank_for_keep(16, 32, 3, 3, 0.25)
    assert r * (16 + 32 + 3 + 3) <= 0.25 * 16 * 32 * 9 < (r + 1) * (16 + 32 + 3 + 3)


def test_tucker_energy_ranks_of_a_low_rank_kernel():
    w = torch.einsum("oa,ab,bi->oi", torch.randn(8, 2), torch.randn(2, 2), torch.randn(2, 6))
    w = w[:, :, None, None].repeat(1, 1, 3, 3)
    assert tucker_energy_ranks(w, 0.999) == (2, 2)


def _flop_macs(module, x):
    with FlopCounterMode(display=False) as fc:
        module(x)
    return fc.get_total_flops() // 2


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0), (2, 1)])
def test_module_macs_match_flop_counter(stride, padding):
    conv = nn.Conv2d(6, 8, 3, stride=stride, padding=padding, bias=False)
    x = torch.randn(1, 6, 11, 11)
    assert module_macs(conv, (11, 11)) == _flop_macs(conv, x)
    seq = tucker2_conv(conv, (3, 4))
    assert module_macs(seq, (11, 11)) == _flop_macs(seq, x)
    lin = nn.Linear(20, 10, bias=False)
    assert module_macs(svd_linear(lin, 4)) == _flop_macs(svd_linear(lin, 4), torch.randn(1, 20)) == 4 * 30
