import pytest
import torch

from torchslim.zoo import build_model


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so that a wrong
    channel slice or order shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.rand(c, generator=g) * 0.4 - 0.2)
    return model.eval()


@pytest.fixture
def resnet():
    return randomize_bn(build_model("resnet8", dataset="mnist"))


@pytest.fixture
def mobilenet():
    return randomize_bn(build_model("mobilenetv2", dataset="mnist"))


@pytest.fixture
def x28():
    return torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
