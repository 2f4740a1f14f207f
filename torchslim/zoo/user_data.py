"""Bring your own data: wherever a data set *name* is accepted (recipe
``data.dataset``, CLI ``--dataset``, ``load_dataset``, ``build_model(dataset=...)``)
a path or a small spec works too.

Sources (the kind is found from the path; ``kind=`` forces it):

* ``data.npz`` with arrays ``x``/``y``, or ``x_train``/``y_train``/``x_test``/``y_test``;
* ``x.npy:y.npy``, or a folder with ``x.npy`` + ``y.npy`` (or ``inputs.npy`` +
  ``labels.npy``, or ``x_train.npy`` ... ``y_test.npy``), memory-mapped;
* a folder of images, one sub-folder per class (``imgs/cat/1.png``), or
  ``train/`` and ``test/`` folders of class folders; read with Pillow,
  converted to ``mode`` (``RGB`` or ``L``; default: that of the first image),
  resized to ``size`` (``HxW``; default: the first image's size), floats in
  [0, 1], NCHW;
* ``table.csv``: a header row, numeric feature columns and a label column
  (``label_column``, default ``label``; integer or string labels); a ``split``
  column of ``train``/``test`` is the file's own split;
* a folder written by ``datasets.Dataset.save_to_disk`` (a ``DatasetDict`` with
  ``train`` and ``test``/``validation`` is its own split), columns
  ``input_column`` (default: the first of pixel_values, image, img, x, ...)
  and ``label_column``; needs the ``datasets`` package;
* ``pkg.module:fn``: a function returning ``(x, y)``, a dict of arrays, an
  ``ArrayDataset`` or a torch ``Dataset`` of ``(x, y)`` pairs (called with
  ``split="train"``/``"test"`` when it takes a ``split`` argument);
* ``sentences.txt``: one sentence per line, tokenised with ``tokenizer``
  (``minilm``, the default, or a Hugging Face model folder) into
  ``(input_ids, attention_mask)`` (a ``TextDataset``; no labels), for sentence
  encoders: embedding fidelity (``analysis.fidelity``), calibration, distillation.

Options follow the path as ``PATH?key=value&key=value`` (``,`` also separates
them), or as a mapping ``{path: PATH, key: value}`` in a recipe:
``kind``, ``test_fraction``, ``seed``, ``size``, ``mode``, ``label_column``,
``input_column``, ``tokenizer``, ``max_length``, ``stream``, ``dtype``
(inputs are float32; ``dtype=int64`` keeps integer inputs such as token ids
for a Hugging Face text classifier).

Split: a source's own train/test split is used when it has one; otherwise a
fixed stratified split, ``test_fraction`` = 0.2 (20%) of each class to test,
chosen by a generator seeded with ``seed`` (default 0), so every run sees the
same split (and ``DataSpec.holdout`` is then taken from train as usual).

Memory: small data is read into an in-memory ``ArrayDataset`` (the fast
path). Data whose float32 inputs exceed ``STREAM_BYTES`` (1 GiB), or any with
``stream=true``, becomes a ``StreamingDataset``: ``.npy`` rows read from a
memory map, images and Arrow rows read lazily per batch.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..core.errors import DataError
from . import readers
from .data import ArrayDataset, DatasetInfo
from .streaming import LazyArray, StreamingDataset

__all__ = ["DataSource", "UserData", "TextDataset", "KINDS", "STREAM_BYTES", "DEFAULT_TEST_FRACTION",
           "is_user_data", "parse_data_spec", "spec_string", "load_user_data", "load_user_dataset",
           "user_dataset_info", "load_text", "stratified_split", "check_data_fits", "check_inputs_fit",
           "expected_inputs"]

KINDS = ("npz", "npy", "images", "csv", "hf", "callable", "text")
STREAM_BYTES = 1 << 30
DEFAULT_TEST_FRACTION = 0.2
_SUFFIXES = {".npz": "npz", ".csv": "csv", ".txt": "text", ".npy": "npy"}
_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_COMMON = ("kind", "test_fraction", "seed", "stream")
_OPTIONS_OF = {"npz": ("dtype",), "npy": ("dtype",), "images": ("size", "mode"), "csv": ("label_column", "dtype"),
               "hf": ("size", "mode", "label_column", "input_column", "dtype"), "callable": ("dtype",),
               "text": ("tokenizer", "max_length")}
_DEFAULTS = {"test_fraction": DEFAULT_TEST_FRACTION, "seed": 0, "size": None, "mode": None, "label_column": "label",
             "input_column": None, "tokenizer": None, "max_length": 128, "stream": None, "kind": None,
             "dtype": "float32"}


# ---------------------------------------------------------------- the spec
def _bool(v: Any, key: str) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise DataError(f"option {key}={v!r}: use true or false")


def _size(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        parts = list(v)
    else:
        parts = [p for p in re.split(r"[x,*]", str(v).strip().lower()) if p]
    try:
        nums = [int(p) for p in parts]
    except (TypeError, ValueError):
        nums = []
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2 or min(nums) < 1:
        raise DataError(f"option size={v!r}: give HxW (e.g. 32x32) or one number for a square")
    return nums[0], nums[1]


def _number(v: Any, key: str, cast, low, high=None):
    try:
        out = cast(v)
        if isinstance(v, float) and cast is int and not v.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise DataError(f"option {key}={v!r}: expected {'an integer' if cast is int else 'a number'}") from None
    if out < low or (high is not None and out >= high):
        rng = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise DataError(f"option {key}={v!r}: must be {rng}")
    return out


def _option(key: str, v: Any):
    if key == "kind":
        if v not in KINDS:
            raise DataError(f"option kind={v!r}: use one of {list(KINDS)}")
        return v
    if key == "test_fraction":
        out = _number(v, key, float, 0.0, 1.0)
        if out <= 0:
            raise DataError(f"option test_fraction={v!r}: must be in (0, 1)")
        return out
    if key == "seed":
        return _number(v, key, int, 0)
    if key == "max_length":
        return _number(v, key, int, 2)
    if key == "size":
        return _size(v)
    if key == "mode":
        m = str(v).upper()
        if m not in ("RGB", "L"):
            raise DataError(f"option mode={v!r}: use RGB (3 channels) or L (1 channel, grayscale)")
        return m
    if key == "stream":
        return _bool(v, key)
    if key == "dtype":
        if str(v) not in ("float32", "int64"):
            raise DataError(f"option dtype={v!r}: use float32 (features, images) or int64 (token ids)")
        return str(v)
    return str(v)


def _detect_kind(path: str) -> str:
    if ":" in path and not Path(path).expanduser().exists():
        left, _, right = path.rpartition(":")
        if left.endswith(".npy") and right.endswith(".npy"):
            return "npy"
        if _CALLABLE.match(path):
            return "callable"
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{path}: no such file or folder; give an .npz, x.npy:y.npy, an image folder, a .csv, a saved "
                        "Hugging Face dataset, a .txt of sentences or pkg.module:fn")
    if p.is_file():
        kind = _SUFFIXES.get(p.suffix.lower())
        if kind == "npy":
            raise DataError(f"{path}: one .npy has no labels; give {path}:LABELS.npy (inputs:labels), or a folder "
                            "holding x.npy and y.npy")
        if kind is None:
            raise DataError(f"{path}: unknown data file type {p.suffix!r}; use .npz, .npy (pairs), .csv or .txt "
                            "(or kind=...)")
        return kind
    if readers.is_hf_dataset_folder(p):
        return "hf"
    if readers.npy_folder_files(p) is not None:
        return "npy"
    if readers.is_image_folder(p):
        return "images"
    raise DataError(f"{path}: this folder holds no x.npy + y.npy, no saved Hugging Face dataset and no class "
                    "sub-folders of images; see torchslim.zoo.user_data for the layouts")


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A parsed data spec: the ``path`` (or ``pkg.mod:fn``), its ``kind`` and
    the options given (``options``; the rest take their defaults)."""

    path: str
    kind: str
    options: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str) -> Any:
        return dict(self.options).get(key, _DEFAULTS[key])

    def to_string(self) -> str:
        """The canonical spec string: ``PATH`` or ``PATH?key=value&...`` (sorted)."""
        def text(v):
            if isinstance(v, tuple):
                return "x".join(map(str, v))
            if isinstance(v, bool):
                return "true" if v else "false"
            return str(v)

        opts = [f"{k}={text(v)}" for k, v in sorted(self.options)]
        return self.path + ("?" + "&".join(opts) if opts else "")


def parse_data_spec(spec: "str | Mapping | DataSource") -> DataSource:
    """A ``DataSource`` from ``PATH[?key=value&...]``, a mapping ``{path: ..., key: value}``
    or a DataSource; raises DataError on a missing file or a wrong option."""
    if isinstance(spec, DataSource):
        return spec
    if isinstance(spec, Mapping):
        raw = dict(spec)
        path = raw.pop("path", None)
        if not isinstance(path, str) or not path:
            raise DataError(f"data spec {dict(spec)!r}: 'path' is missing; give {{path: FILE_OR_FOLDER, ...options}}")
    elif isinstance(spec, (str, os.PathLike)):
        path, _, query = os.fspath(spec).partition("?")
        raw = {}
        for item in (q for q in re.split(r"[&,]", query) if q.strip()):
            if "=" not in item:
                raise DataError(f"{spec}: option {item!r} is not key=value (e.g. {path}?size=32x32&mode=L)")
            k, v = item.split("=", 1)
            raw[k.strip()] = v.strip()
    else:
        raise DataError(f"a data set is a name, a path or a mapping {{path: ...}}, not {type(spec).__name__}")
    unknown = sorted(set(raw) - set(_DEFAULTS))
    if unknown:
        raise DataError(f"{path}: unknown option(s) {unknown}; allowed: {sorted(_DEFAULTS)}")
    try:
        opts = {k: _option(k, v) for k, v in raw.items() if v is not None}
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    kind = opts.get("kind") or _detect_kind(path)
    wrong = sorted(set(opts) - set(_COMMON) - set(_OPTIONS_OF[kind]))
    if wrong:
        raise DataError(f"{path}: option(s) {wrong} do not apply to {kind} data; its options are "
                        f"{sorted(set(_COMMON) | set(_OPTIONS_OF[kind]))}")
    return DataSource(path, kind, tuple(sorted(opts.items())))


def spec_string(spec: "str | Mapping | DataSource") -> str:
    """The canonical string of a data spec (what ``load_dataset`` and artifacts record)."""
    return parse_data_spec(spec).to_string()


def is_user_data(name: Any) -> bool:
    """True when ``name`` is a data spec rather than a built-in data set name."""
    if isinstance(name, (Mapping, DataSource, os.PathLike)):
        return True
    if not isinstance(name, str) or not name:
        return False
    from .data import dataset_names

    if name in dataset_names():
        return False
    return (any(c in name for c in "/\\?:") or Path(name).suffix.lower() in _SUFFIXES
            or Path(name).expanduser().exists())


# ---------------------------------------------------------------- loading
@dataclasses.dataclass
class UserData:
    """Both splits of a user data source and its ``DatasetInfo``."""

    train: Any
    test: Any
    info: DatasetInfo
    classes: list[str] | None = None


@dataclasses.dataclass
class TextDataset(ArrayDataset):
    """Tokenised sentences: ``x`` the input ids, ``attention_mask`` beside it,
    ``y`` all zeros (there are no labels); ``inputs()`` gives the pair a
    sentence encoder takes."""

    attention_mask: torch.Tensor | None = None
    sentences: tuple[str, ...] = ()

    def subset(self, index) -> "TextDataset":
        index = torch.as_tensor(index, dtype=torch.long)
        return TextDataset(self.x[index], self.y[index], self.name, f"{self.split}[subset]",
                           self.attention_mask[index], tuple(self.sentences[i] for i in index.tolist()))

    def inputs(self, start: int = 0, stop: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[start:stop], self.attention_mask[start:stop]

    def input_batches(self, batch_size: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [self.inputs(i, i + batch_size) for i in range(0, len(self), batch_size)]


_CACHE: dict[tuple, UserData] = {}


def _signature(src: DataSource) -> tuple:
    """What changes when the files change: size and mtime of the path (and of a folder's entries)."""
    if src.kind == "callable":
        return ()
    paths = [Path(p).expanduser() for p in (src.path.split(":") if src.kind == "npy" and not
                                             Path(src.path).expanduser().exists() else [src.path])]
    sig = []
    for p in paths:
        try:
            st = p.stat()
            sig.append((str(p), st.st_size, st.st_mtime_ns))
            if p.is_dir():
                sig += [(e.name, e.stat().st_mtime_ns) for e in sorted(p.iterdir())]
        except OSError:
            sig.append((str(p), None))
    return tuple(sig)


def load_user_data(spec: "str | Mapping | DataSource", *, tokenizer: Any = None) -> UserData:
    """Read a user data source (see the module doc) into train and test splits
    (remembered per spec while the files are unchanged)."""
    src = parse_data_spec(spec)
    key = (src.to_string(), _signature(src))
    if tokenizer is None and key in _CACHE:
        return _CACHE[key]
    data = _load_text(src, tokenizer) if src.kind == "text" else _load_labelled(src)
    if tokenizer is None:
        _CACHE[key] = data
    return data


def load_user_dataset(spec: "str | Mapping | DataSource", split: str = "train", *, tokenizer: Any = None):
    """Split ``train`` or ``test`` of a user data source."""
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r} of {spec_string(spec)!r}; use 'train' or 'test'")
    return getattr(load_user_data(spec, tokenizer=tokenizer), split)


def user_dataset_info(spec: "str | Mapping | DataSource") -> DatasetInfo:
    return load_user_data(spec).info


def _read(src: DataSource) -> tuple[dict, list | None]:
    p = Path(src.path).expanduser()
    if src.kind == "npz":
        return readers.read_npz(p), None
    if src.kind == "npy":
        if p.is_dir():
            return readers.read_npy_folder(p), None
        x, _, y = src.path.rpartition(":")
        return readers.read_npy_pair(Path(x).expanduser(), Path(y).expanduser()), None
    if src.kind == "images":
        return readers.read_image_folder(p, size=src.get("size"), mode=src.get("mode"))
    if src.kind == "csv":
        return readers.read_csv(p, label_column=src.get("label_column")), None
    if src.kind == "hf":
        return readers.read_hf_dataset(p, input_column=src.get("input_column"), label_column=src.get("label_column"),
                                       size=src.get("size"), mode=src.get("mode"))
    return readers.read_callable(src.path), None


def _labels(parts: dict, classes: list | None, where: str) -> tuple[dict, list | None]:
    """Every part's labels as int64 class indices (strings mapped through the
    sorted class names), or a DataError naming the first bad one."""
    raw = {}
    for k, (_, y) in parts.items():
        y = np.asarray(y.numpy() if isinstance(y, torch.Tensor) else y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise DataError(f"{where}: labels have shape {y.shape}; give one integer class per example (shape (N,))")
        raw[k] = y
    if any(y.dtype.kind in "USO" for y in raw.values()):
        text = {k: y.astype(str) for k, y in raw.items()}
        if classes is None and all(re.fullmatch(r"-?\d+", s) for y in text.values() for s in y):
            raw = {k: y.astype(np.int64) for k, y in text.items()}
        elif classes is None and all(readers.is_number(s) for y in text.values() for s in y):
            raw = {k: y.astype(np.float64) for k, y in text.items()}  # numbers: must be whole, checked below
        else:
            classes = list(classes) if classes is not None else sorted({s for y in text.values() for s in y})
            index = {c: i for i, c in enumerate(classes)}
            missing = sorted({s for y in text.values() for s in y} - set(index))
            if missing:
                raise DataError(f"{where}: labels {missing[:5]} are not among the classes {classes[:10]}")
            return {k: np.array([index[s] for s in y], dtype=np.int64) for k, y in text.items()}, classes
    out = {}
    for k, y in raw.items():
        if y.dtype.kind == "b":
            y = y.astype(np.int64)
        elif y.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
            if len(bad):
                i = int(bad[0])
                raise DataError(f"{where}: labels must be integer class indices 0..K-1; label {y[i].item()!r} at "
                                f"index {i} is not an integer (regression targets are not supported)")
            y = y.astype(np.int64)
        elif y.dtype.kind not in "iu":
            raise DataError(f"{where}: labels of dtype {y.dtype} are not class indices; give integers 0..K-1")
        y = y.astype(np.int64)
        if len(y) and y.min() < 0:
            i = int(np.argmin(y))
            raise DataError(f"{where}: labels must be 0..K-1; found {int(y[i])} at index {i}; shift them to start at 0")
        out[k] = y
    return out, classes


def _check_inputs(x, n_labels: int, where: str) -> tuple[int, ...]:
    if isinstance(x, np.ndarray) and x.dtype.kind not in "fiub":
        raise DataError(f"{where}: inputs of dtype {x.dtype} are not numeric; give numbers (float32)")
    shape = tuple(x.shape)
    if len(shape) < 2:
        raise DataError(f"{where}: inputs have shape {shape}; give one row per example, shape (N, features...)")
    if shape[0] != n_labels:
        raise DataError(f"{where}: {shape[0]} inputs but {n_labels} labels; give exactly one label per example")
    if shape[0] == 0:
        raise DataError(f"{where}: holds no examples; add data")
    return shape[1:]


def stratified_split(y: np.ndarray, test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices, each sorted: ``round(test_fraction * n_c)`` of
    every class ``c`` to test, picked by a generator seeded with ``seed``; at
    least one example each side when there are two or more."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = int(math.floor(test_fraction * len(idx) + 0.5))
        test.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test)) if test else np.empty(0, np.int64)
    if len(y) >= 2 and len(test_idx) == 0:
        test_idx = np.sort(rng.permutation(len(y))[:1])
    if len(y) >= 2 and len(test_idx) == len(y):
        test_idx = test_idx[1:]
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return train_idx.astype(np.int64), test_idx.astype(np.int64)


def _lazy(x, dtype) -> LazyArray:
    """A memory-mapped array as a LazyArray (rows read on demand)."""
    return LazyArray(lambda i, m=x: np.asarray(m[i]), len(x), x.shape[1:], dtype=dtype)


def _select(x, idx: np.ndarray, dtype):
    if isinstance(x, LazyArray):
        return x.view(idx)
    if isinstance(x, np.memmap):
        return _lazy(x, dtype).view(idx)
    return x[idx]


def _dataset(x, y: np.ndarray, name: str, split: str, stream: bool, dtype: str):
    yt = torch.from_numpy(y)
    if isinstance(x, np.memmap):
        x = _lazy(x, dtype)
    if isinstance(x, LazyArray):
        x = x.astype(dtype)
        if stream:
            return StreamingDataset(x, yt, name, split)
        x = x.read_all()
    else:
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=dtype))
    return ArrayDataset(x, yt, name, split)


def _check_integer(x, where: str) -> None:
    """``dtype=int64`` inputs (token ids) must be whole numbers; checked on in-memory arrays."""
    if isinstance(x, np.ndarray) and not isinstance(x, np.memmap) and x.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(x.reshape(-1)) | (x.reshape(-1) != np.round(x.reshape(-1))))
        if len(bad):
            raise DataError(f"{where}: dtype=int64 needs whole-number inputs (token ids); found "
                            f"{x.reshape(-1)[bad[0]].item()!r}; remove dtype=int64 for real-valued features")


def _load_labelled(src: DataSource) -> UserData:
    name = src.to_string()
    parts, classes = _read(src)
    parts = {k: (readers.as_inputs(x), y) for k, (x, y) in parts.items()}
    labels, classes = _labels(parts, classes, src.path)
    shapes = {k: _check_inputs(x, len(labels[k]), f"{src.path} ({k})" if k != "all" else src.path)
              for k, (x, _) in parts.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(f"{src.path}: train and test inputs differ in shape {shapes}; give both the same shape")
    dtype = src.get("dtype")
    if dtype == "int64":
        for k, (x, _) in parts.items():
            _check_integer(x, src.path)
    own_split = "all" not in parts
    if not own_split:
        x, y = parts["all"][0], labels["all"]
        if len(y) < 2:
            raise DataError(f"{src.path}: has {len(y)} example; a train/test split needs at least 2")
        tr, te = stratified_split(y, src.get("test_fraction"), src.get("seed"))
        parts = {"train": (_select(x, tr, dtype), y[tr]), "test": (_select(x, te, dtype), y[te])}
    else:
        parts = {k: (x, labels[k]) for k, (x, _) in parts.items()}
    sample = next(iter(shapes.values()))
    n = sum(len(y) for _, y in parts.values())
    stream = src.get("stream")
    if stream is None:
        stream = n * math.prod(sample) * 4 > STREAM_BYTES
    ds = {k: _dataset(x, y, name, k, stream, dtype) for k, (x, y) in parts.items()}
    ymax = max(int(y.max()) for _, y in parts.values())
    num_classes = len(classes) if classes else ymax + 1
    how = ", its own split" if own_split else f", {src.get('test_fraction'):.0%} test (seeded stratified split)"
    desc = (f"{src.kind} data {src.path}: {len(ds['train'])} train / {len(ds['test'])} test, {num_classes} classes, "
            f"inputs {'x'.join(map(str, sample))}{', streamed' if stream else ''}{how}")
    info = DatasetInfo(name, tuple(int(s) for s in sample), int(num_classes), desc)
    return UserData(ds["train"], ds["test"], info, classes)


# ---------------------------------------------------------------- text
def _tokenizer(tokenizer: Any, src: DataSource | None = None):
    tok = tokenizer if tokenizer is not None else (src.get("tokenizer") if src is not None else None)
    if tok is None or isinstance(tok, (str, os.PathLike)):
        from .sources import tokenizer_for

        return tokenizer_for(tok or "minilm")
    return tok


def _sentences(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read this text file ({e}); give UTF-8 text, one sentence per line") from None
    out = [s.strip() for s in lines if s.strip()]
    if not out:
        raise DataError(f"{path}: holds no sentences; write one sentence per line")
    return out


def load_text(path: "str | os.PathLike | DataSource", *, tokenizer: Any = None, max_length: int | None = None
              ) -> TextDataset:
    """Every sentence of a text file (one per line, blank lines skipped)
    tokenised by ``tokenizer`` (a tokenizer, ``"minilm"`` (default), or a
    Hugging Face model folder), padded to the longest (at most
    ``max_length``, default 128 tokens)."""
    src = parse_data_spec(path) if not isinstance(path, DataSource) else path
    if src.kind != "text":
        raise DataError(f"{src.path}: is {src.kind} data, not a .txt of sentences")
    p = Path(src.path).expanduser()
    sents = _sentences(p)
    tok = _tokenizer(tokenizer, src)
    limit = int(max_length or src.get("max_length"))
    enc = tok(sents, padding=True, truncation=True, max_length=limit, return_tensors="pt")
    ids, mask = enc["input_ids"].long(), enc["attention_mask"].long()
    return TextDataset(ids, torch.zeros(len(ids), dtype=torch.long), src.to_string(), "all", mask, tuple(sents))


def _load_text(src: DataSource, tokenizer: Any) -> UserData:
    data = load_text(src, tokenizer=tokenizer)
    if len(data) < 2:
        raise DataError(f"{src.path}: has {len(data)} sentence; a train/test split needs at least 2")
    tr, te = stratified_split(np.zeros(len(data)), src.get("test_fraction"), src.get("seed"))
    train, test = data.subset(tr), data.subset(te)
    train.split, test.split = "train", "test"
    info = DatasetInfo(src.to_string(), (int(data.x.shape[1]),), 0,
                       f"{len(data)} sentences from {src.path}, {len(train)} train / {len(test)} test, "
                       f"up to {data.x.shape[1]} tokens")
    return UserData(train, test, info)


# ---------------------------------------------------------------- fit to a model
def expected_inputs(model) -> str:
    """What ``model`` takes, for messages: ``"1x8x8 per example"`` (from its
    own example inputs or its recorded input shape), else a phrase."""
    try:
        from . import example_inputs

        ex = example_inputs(model, None) if (hasattr(model, "example_inputs") or
                                             getattr(model, "torchslim_arch", None)) else None
    except Exception:
        ex = None
    if not ex:
        return "the shape it was built for"
    return " and ".join("x".join(map(str, t.shape[1:])) or "scalars" for t in ex) + " per example"


_expected = expected_inputs


_DATA_FIX = "reshape the data (images: size=HxW, mode=L|RGB) or build the model for it (zoo models: dataset=...)"


@torch.no_grad()
def _failing_layer(model):
    """Hooks recording which submodule is running: ``(handles, stack)``;
    after a failed forward the top of ``stack`` is the layer that raised."""
    stack: list[tuple[str, str]] = []
    handles = []
    if not isinstance(model, torch.nn.Module):
        return handles, stack

    def enter(name):
        def hook(mod, args) -> None:  # returns None: the inputs are left as they are
            stack.append((name, type(mod).__name__))
        return hook

    def leave(mod, args, out) -> None:  # returns None: the output is left as it is
        if stack:
            stack.pop()

    for name, m in model.named_modules():
        if not name:
            continue
        try:
            handles.append(m.register_forward_pre_hook(enter(name)))
            handles.append(m.register_forward_hook(leave))
        except RuntimeError:  # e.g. a scripted module
            continue
    return handles, stack


def check_inputs_fit(model, inputs: tuple, *, where: str, fix: str = _DATA_FIX, error: type = DataError):
    """Run ``model`` on ``inputs`` (a batch) and return its output; if it
    fails, raise ``error`` naming ``where``, the given shape per example,
    the layer that failed, the shape the model takes, and ``fix``."""
    was = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.eval()
    handles, stack = _failing_layer(model)
    try:
        with torch.no_grad():
            return model(*inputs)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        shape = "x".join(map(str, inputs[0].shape[1:])) or "scalars"
        layer = f"layer {stack[-1][0]!r} ({stack[-1][1]}): " if stack else ""
        raise error(f"{where}: inputs of shape {shape} per example do not fit the model ({layer}{type(e).__name__}: "
                    f"{msg}); it takes {_expected(model)}: {fix}") from None
    finally:
        for h in handles:
            h.remove()
        if was:
            model.train()


def check_data_fits(model, data, *, where: str | None = None, num_classes: int | None = None,
                    fix: str | None = None) -> None:
    """Run ``model`` on the first two examples of ``data`` before anything
    long: a DataError names the data and says what to change when the inputs
    do not fit the model, or the labels exceed its outputs (those of ``data``
    and, if given, ``num_classes``: the classes of the whole data set, both
    splits). ``fix`` replaces the generic advice on a shape mismatch."""
    name = where or getattr(data, "name", "") or "data"
    if len(data) == 0:
        raise DataError(f"{name}: holds no examples; add data")
    n = min(2, len(data))
    inputs = data.inputs(0, n) if isinstance(data, TextDataset) else (data.x[:n],)
    out = check_inputs_fit(model, inputs, where=name, fix=fix or _DATA_FIX)
    logits = getattr(out, "logits", out)
    if isinstance(data, TextDataset) or not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        return
    k, top = int(logits.shape[1]), int(data.y.max())
    if num_classes:
        top = max(top, int(num_classes) - 1)
    if top >= k:
        raise DataError(f"{name}: labels go up to {top} but the model has {k} outputs; build the model for this data "
                        f"(zoo models: dataset=...) or relabel to 0..{k - 1}")
