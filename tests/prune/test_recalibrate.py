import pytest
import torch
import torch.nn as nn

from torchslim.core.errors import ConfigError, DataError
from torchslim.prune import recalibrate_bn
from torchslim.zoo.data import ArrayDataset


def test_running_stats_are_the_data_statistics():
    """Oracle: after recalibration a BatchNorm's running mean/var are the
    average over the batches given of each batch's mean and unbiased variance
    of its input (PyTorch's cumulative average, momentum=None); the weights,
    the momentum and every module's mode are unchanged; dropout was off."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 3)
    model = nn.Sequential(conv, nn.Dropout(0.5), nn.BatchNorm2d(4), nn.ReLU()).train()
    model[2].running_mean.fill_(5.0)
    model[2].momentum = 0.3
    x = torch.rand(70, 1, 8, 8)
    data = ArrayDataset(x, torch.zeros(70, dtype=torch.long), "t", "train")
    w = conv.weight.clone()
    recalibrate_bn(model, data, batches=3, batch_size=32)  # 32 + 32 + 6 samples
    bn = model[2]
    with torch.no_grad():  # dropout in eval mode: the BatchNorm saw conv(x) itself
        acts = [conv(x[i:i + 32]).transpose(0, 1).reshape(4, -1) for i in (0, 32, 64)]
    torch.testing.assert_close(bn.running_mean, sum(a.mean(1) for a in acts) / 3, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bn.running_var, sum(a.var(1, unbiased=True) for a in acts) / 3, atol=1e-5, rtol=1e-5)
    assert torch.equal(conv.weight, w) and bn.momentum == 0.3
    assert all(m.training for m in model.modules())


def test_errors_and_no_batchnorm():
    m = nn.Sequential(nn.Linear(3, 2))
    assert recalibrate_bn(m, [torch.rand(2, 3)]) is m
    with pytest.raises(ConfigError, match="batches"):
        recalibrate_bn(nn.BatchNorm1d(3), [torch.rand(2, 3)], batches=0)
    with pytest.raises(DataError, match="no batch"):
        recalibrate_bn(nn.BatchNorm1d(3), [])


def test_structured_stage_recalibrates(mnist_small):
    from torchslim.core import Context, apply
    from torchslim.prune import StructuredConfig
    from torchslim.zoo import build_model

    train, _ = mnist_small
    m = build_model("resnet8", dataset="mnist")
    ctx = Context(train_data=train, dataset="mnist", progress=False)
    p = apply(m, StructuredConfig(ratio=0.5, target="channels", recalibrate_bn=2), ctx)
    assert int(p.stem[1].num_batches_tracked) == 2
    assert StructuredConfig.from_yaml(StructuredConfig(recalibrate_bn=4).to_yaml()).recalibrate_bn == 4
    with pytest.raises(ConfigError, match="recalibrate_bn"):
        StructuredConfig(recalibrate_bn=-1)
