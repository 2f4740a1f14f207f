"""Layer links from the executed graph, used by dead-unit removal and
BatchNorm folding: the same pairs as the fx walk on the zoo, and Hugging
Face CNNs that fx cannot trace."""
from __future__ import annotations

import pytest
import torch

from torchslim.graph.links import bn_pairs, unit_links
from torchslim.prune.dead import _links_with_path
from torchslim.quantize.bnfold import find_bn_pairs, fold_batchnorm
from torchslim.zoo import build_model


@pytest.mark.parametrize("name", ["lenet5", "lenet300", "resnet8", "mobilenetv2"])
def test_links_match_the_fx_walk_on_the_zoo(name):
    m = build_model(name, dataset="mnist").eval()
    x = (torch.rand(2, 1, 28, 28),)
    fx_links = {a: (b, k) for a, (b, k, _) in _links_with_path(m).items()}
    assert unit_links(m, x) == fx_links
    assert sorted(bn_pairs(m, x)) == sorted(find_bn_pairs(m))


def test_hf_resnet_batchnorm_folds_exactly():
    pytest.importorskip("transformers")
    from torchslim.testing.hf_suite import build

    m, x = build("resnet")
    for mod in m.modules():  # non-trivial statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        ref = m(*x).logits
    pairs = fold_batchnorm(m, x)
    assert len(pairs) == sum(isinstance(mod, torch.nn.BatchNorm2d) for mod in build("resnet")[0].modules())
    with torch.no_grad():
        torch.testing.assert_close(m(*x).logits, ref, atol=1e-5, rtol=1e-4)
