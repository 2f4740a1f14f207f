import copy

import pytest
import torch


@pytest.fixture(scope="session")
def trained_lenet5(mnist_small):
    """LeNet-5 trained briefly on 2,000 MNIST images, plus (calib, test) data."""
    from torchslim.train import TrainConfig, fit
    from torchslim.zoo import build_model
    from torchslim.zoo.data import split_train

    train, test = mnist_small
    train, calib = split_train(train, 256)
    torch.manual_seed(0)
    m = build_model("lenet5", dataset="mnist")
    fit(m, train, TrainConfig(epochs=1, batch_size=64, lr=2e-3), progress=False)
    return m.eval(), calib, test, train


@pytest.fixture
def lenet5(trained_lenet5):
    m, calib, test, train = trained_lenet5
    return copy.deepcopy(m), calib, test, train
