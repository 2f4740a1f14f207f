"""Elastic BatchNorm and Linear against the plain layers (oracle), in
training and eval mode, at full and reduced width."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from torchslim.nas import ChannelGroup, DynamicBatchNorm2d, DynamicLinear, ElasticBlock


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_matches_plain_in_training_and_eval(momentum):
    ref = nn.BatchNorm2d(6, momentum=momentum)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    g = ChannelGroup("g", 6, (3, 6))
    dyn = DynamicBatchNorm2d(copy.deepcopy(ref), group=g)
    ref.train(), dyn.train()
    for _ in range(3):
        x = torch.randn(8, 6, 4, 4)
        torch.testing.assert_close(dyn(x), ref(x))
    torch.testing.assert_close(dyn.running_mean, ref.running_mean)
    torch.testing.assert_close(dyn.running_var, ref.running_var)
    assert int(dyn.num_batches_tracked) == int(ref.num_batches_tracked) == 3
    ref.eval(), dyn.eval()
    x = torch.randn(2, 6, 4, 4)
    torch.testing.assert_close(dyn(x), ref(x))
    # narrower: the leading channels, with their own statistics
    g.active = 3
    plain = dyn.to_plain()
    assert plain.num_features == 3
    torch.testing.assert_close(dyn(x[:, :3]), plain(x[:, :3]))
    torch.testing.assert_close(plain.running_var, ref.running_var[:3])


def test_training_a_narrow_subnet_updates_only_its_statistics():
    dyn = DynamicBatchNorm2d(nn.BatchNorm2d(6), group=ChannelGroup("g", 6, (2, 6)))
    dyn.train()
    dyn(torch.randn(4, 2, 3, 3) + 5.0)
    assert torch.all(dyn.running_mean[:2] > 0.3) and torch.all(dyn.running_mean[2:] == 0)


def test_linear_reads_leading_features():
    ref = nn.Linear(8, 3)
    g = ChannelGroup("g", 8, (4, 8))
    dyn = DynamicLinear(ref, in_group=g)
    x = torch.randn(5, 8)
    torch.testing.assert_close(dyn(x), ref(x))
    g.active = 4
    plain = dyn.to_plain()
    assert (plain.in_features, plain.out_features) == (4, 3)
    torch.testing.assert_close(plain(x[:, :4]), x[:, :4] @ ref.weight[:, :4].t() + ref.bias)


def test_skipped_block_is_the_identity():
    blk = ElasticBlock(nn.Linear(4, 4))
    x = torch.randn(2, 4)
    blk.active = False
    assert blk(x) is x
