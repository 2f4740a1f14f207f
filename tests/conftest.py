
import pytest
import torch

# Tests are small; one thread keeps them predictable on a shared 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def mnist_small():
    """A small real MNIST slice: 2,000 train / 1,000 test."""
    from torchslim.zoo import load_dataset

    tr, te = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    return tr.take(2000), te.take(1000)


@pytest.fixture(scope="session")
def digits():
    from torchslim.zoo import load_dataset

    return load_dataset("digits", "train"), load_dataset("digits", "test")
