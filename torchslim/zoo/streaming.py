"""Data larger than memory, read lazily per batch.

``LazyArray`` looks like an input tensor along its first dimension: ``x[i]``,
``x[i:j]`` and ``x[index_tensor]`` read just those examples (through a
``read(indices)`` function: rows of a memory-mapped ``.npy``, image files,
rows of an Arrow table) and return a tensor (float32, or int64 for token
ids). ``StreamingDataset``
pairs one with labels held in memory (they are small), so everything that
slices ``data.x`` / ``data.y`` — ``zoo.Loader`` (hence ``train.fit``),
``analysis.evaluate``, calibration, pruning importance — streams without a
change; it is also a ``torch.utils.data.Dataset`` (``dataloader()`` gives a
``DataLoader`` with worker processes reading ahead).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

__all__ = ["LazyArray", "StreamingDataset"]

Reader = Callable[[np.ndarray], np.ndarray]


class LazyArray:
    """``n`` examples of shape ``sample_shape`` read on demand by ``read``
    (int64 indices in, ``(len(indices), *sample_shape)`` array out), cast to
    ``dtype`` (float32 or int64)."""

    def __init__(self, read: Reader, n: int, sample_shape: tuple[int, ...], *, index: np.ndarray | None = None,
                 dtype=np.float32):
        self._read = read
        self._index = np.arange(n, dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self._dtype = np.dtype(dtype)

    # ---- tensor-like surface -------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self._index), *self.sample_shape))

    @property
    def dtype(self) -> torch.dtype:
        return torch.from_numpy(np.empty(0, self._dtype)).dtype

    @property
    def ndim(self) -> int:
        return 1 + len(self.sample_shape)

    def __len__(self) -> int:
        return len(self._index)

    def _positions(self, key) -> np.ndarray:
        if isinstance(key, torch.Tensor):
            key = key.numpy()
        return self._index[key]

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, (int, np.integer)) or (isinstance(key, torch.Tensor) and key.ndim == 0):
            return self[np.array([int(key)])][0]
        rows = self._read(np.atleast_1d(self._positions(key)))
        return torch.from_numpy(np.ascontiguousarray(rows, dtype=self._dtype))

    def view(self, index) -> "LazyArray":
        """The examples at ``index`` (positions in this array), still unread."""
        return LazyArray(self._read, 0, self.sample_shape, index=self._positions(index), dtype=self._dtype)

    def astype(self, dtype) -> "LazyArray":
        return LazyArray(self._read, 0, self.sample_shape, index=self._index, dtype=dtype)

    def read_all(self, batch: int = 1024) -> torch.Tensor:
        return torch.cat([self[i: i + batch] for i in range(0, len(self), batch)]) if len(self) else \
            torch.empty(0, *self.sample_shape, dtype=self.dtype)


class StreamingDataset(torch.utils.data.Dataset):
    """Inputs read lazily (a ``LazyArray``) and integer labels in memory, with
    the surface of ``zoo.ArrayDataset`` (``x``, ``y``, ``subset``, ``take``,
    ``batches``)."""

    def __init__(self, x: LazyArray, y: torch.Tensor, name: str = "", split: str = ""):
        self.x, self.y, self.name, self.split = x, torch.as_tensor(y).long(), name, split

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[int(i)], self.y[int(i)]

    def __getitems__(self, indices):
        """One read for a whole batch (``DataLoader`` calls this when present)."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        xs, ys = self.x[idx], self.y[idx]
        return list(zip(xs, ys))

    def __repr__(self) -> str:
        return f"StreamingDataset({self.name!r}, {self.split!r}, {len(self)} examples of {self.x.sample_shape})"

    def subset(self, index) -> "StreamingDataset":
        index = torch.as_tensor(index, dtype=torch.long)
        return StreamingDataset(self.x.view(index), self.y[index], self.name, f"{self.split}[subset]")

    def take(self, n: int) -> "StreamingDataset":
        return self.subset(torch.arange(min(n, len(self))))

    def batches(self, batch_size: int, **kw):
        from .data import Loader

        return Loader(self, batch_size, **kw)

    def dataloader(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, num_workers: int = 0,
                   drop_last: bool = False) -> torch.utils.data.DataLoader:
        """A ``torch.utils.data.DataLoader`` of ``(x, y)`` batches, ``num_workers``
        processes reading ahead; shuffled by a generator seeded with ``seed``."""
        g = torch.Generator().manual_seed(seed) if shuffle else None
        return torch.utils.data.DataLoader(self, batch_size=batch_size, shuffle=shuffle, generator=g,
                                           num_workers=num_workers, drop_last=drop_last)

    def materialize(self):
        """Everything read into an in-memory ``ArrayDataset``."""
        from .data import ArrayDataset

        return ArrayDataset(self.x.read_all(), self.y.clone(), self.name, self.split)
