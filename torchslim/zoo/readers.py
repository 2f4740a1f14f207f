"""Readers of user data formats, for ``zoo.user_data``. Each returns ``Parts``:
``{"all": (x, y)}`` or, when the source has its own split,
``{"train": (x, y), "test": (x, y)}``; ``x`` is an array (in memory or
memory-mapped) or a ``LazyArray``, ``y`` raw labels (checked by the caller).
Every error is a one-line ``DataError`` naming the file and the fix."""
from __future__ import annotations

import csv
import importlib
import inspect
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..core.errors import DataError
from .streaming import LazyArray, StreamingDataset

Parts = dict[str, tuple[Any, Any]]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
NPY_PAIRS = (("x", "y"), ("inputs", "labels"))
HF_INPUT_COLUMNS = ("pixel_values", "image", "img", "x", "inputs", "input", "features")


# ---------------------------------------------------------------- arrays
def read_npz(path: Path) -> Parts:
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:
        raise DataError(f"{path}: not a readable .npz ({e}); write it with np.savez(path, x=inputs, y=labels)") \
            from None
    with z:
        keys = set(z.files)
        try:
            if {"x_train", "y_train", "x_test", "y_test"} <= keys:
                return {"train": (z["x_train"], z["y_train"]), "test": (z["x_test"], z["y_test"])}
            if {"x", "y"} <= keys:
                return {"all": (z["x"], z["y"])}
        except ValueError as e:  # object arrays need pickle, which is never used
            raise DataError(f"{path}: holds object arrays ({e}); save numeric arrays (np.asarray(x, np.float32))") \
                from None
    raise DataError(f"{path}: has arrays {sorted(keys)}; name them x and y (or x_train, y_train, x_test, y_test), "
                    "e.g. np.savez(path, x=inputs, y=labels)")


def _load_npy(path: Path, *, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as e:
        raise DataError(f"{path}: not a readable .npy ({e}); write it with np.save(path, array)") from None


def read_npy_pair(x_path: Path, y_path: Path) -> Parts:
    for p in (x_path, y_path):
        if not p.is_file():
            raise DataError(f"{p}: no such file; give INPUTS.npy:LABELS.npy")
    return {"all": (_load_npy(x_path, mmap=True), _load_npy(y_path, mmap=False))}


def npy_folder_files(folder: Path) -> Parts | None:
    """The .npy files of a folder (x.npy + y.npy, inputs.npy + labels.npy, or
    x_train/y_train/x_test/y_test.npy) as paths, or None."""
    for xs, ys in NPY_PAIRS:
        split = {s: (folder / f"{xs}_{s}.npy", folder / f"{ys}_{s}.npy") for s in ("train", "test")}
        if all(p.is_file() for pair in split.values() for p in pair):
            return split
        if (folder / f"{xs}.npy").is_file() and (folder / f"{ys}.npy").is_file():
            return {"all": (folder / f"{xs}.npy", folder / f"{ys}.npy")}
    return None


def read_npy_folder(folder: Path) -> Parts:
    files = npy_folder_files(folder)
    if files is None:
        raise DataError(f"{folder}: no x.npy + y.npy (or inputs.npy + labels.npy, or x_train/y_train/x_test/y_test"
                        ".npy) in this folder; save inputs and labels under those names")
    return {k: (_load_npy(x, mmap=True), _load_npy(y, mmap=False)) for k, (x, y) in files.items()}


# ---------------------------------------------------------------- images
def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def is_image_folder(folder: Path) -> bool:
    subs = [d for d in folder.iterdir() if d.is_dir()]
    if {d.name for d in subs} >= {"train", "test"}:
        subs = [d for d in (folder / "train").iterdir() if d.is_dir()]
    return any(image_files(d) for d in subs)


def _to_array(img, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    """A PIL image as float32 in [0, 1], CHW, converted to ``mode`` and resized to ``size`` (H, W)."""
    from PIL import Image

    img = img.convert(mode)
    if size is not None and (img.height, img.width) != tuple(size):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    a = np.asarray(img, dtype=np.float32) / 255.0
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _open_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
        img.load()
        return img
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"{path}: cannot read this image ({type(e).__name__}: {e}); remove or replace the file") \
            from None


def image_mode_size(first: Path, size, mode) -> tuple[tuple[int, int], str]:
    """(size, mode) given, or taken from the first image (L for grayscale, else RGB)."""
    if size is None or mode is None:
        img = _open_image(first)
        size = size or (img.height, img.width)
        mode = mode or ("L" if img.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
    return tuple(size), mode


def read_image_folder(folder: Path, *, size, mode) -> tuple[Parts, list[str]]:
    """One sub-folder per class (``folder/cat/1.png``), or ``train/`` and
    ``test/`` folders of class sub-folders (the folder's own split)."""
    names = {d.name for d in folder.iterdir() if d.is_dir()}
    roots = {"train": folder / "train", "test": folder / "test"} if names >= {"train", "test"} else {"all": folder}
    classes: set[str] = set()
    per_root: dict[str, dict[str, list[Path]]] = {}
    for split, root in roots.items():
        found = {}
        for d in sorted(x for x in root.iterdir() if x.is_dir()):
            files = image_files(d)
            if not files:
                raise DataError(f"{d}: class folder with no images ({', '.join(IMAGE_SUFFIXES)}); add images or "
                                "remove the folder")
            found[d.name] = files
        if not found:
            loose = image_files(root)
            hint = " (images lie loose in it)" if loose else ""
            raise DataError(f"{root}: no class sub-folders{hint}; put the images in one folder per class, "
                            f"e.g. {root}/cat/1.png, {root}/dog/2.png")
        per_root[split] = found
        classes |= set(found)
    class_names = sorted(classes)
    index = {c: i for i, c in enumerate(class_names)}
    first = next(iter(next(iter(per_root.values())).values()))[0]
    size, mode = image_mode_size(first, size, mode)
    parts: Parts = {}
    for split, found in per_root.items():
        files = [f for c in sorted(found) for f in found[c]]
        labels = np.array([index[c] for c in sorted(found) for _ in found[c]], dtype=np.int64)
        parts[split] = (image_lazy(files, size, mode), labels)
    return parts, class_names


def image_lazy(files: list[Path], size: tuple[int, int], mode: str) -> LazyArray:
    channels = 1 if mode == "L" else 3

    def read(idx: np.ndarray) -> np.ndarray:
        return np.stack([_to_array(_open_image(files[i]), size, mode) for i in idx]) if len(idx) else \
            np.empty((0, channels, *size), np.float32)

    return LazyArray(read, len(files), (channels, *size))


# ---------------------------------------------------------------- CSV
def is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def read_csv(path: Path, *, label_column: str) -> Parts:
    """Numeric feature columns and a label column; a header row is required.
    A ``split`` column of ``train``/``test`` values is the file's own split."""
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read this CSV ({e})") from None
    if not rows:
        raise DataError(f"{path}: the CSV is empty; write a header row and one row per example")
    header = [c.strip() for c in rows[0]]
    if all(is_number(c) for c in header):
        raise DataError(f"{path}: the first row is numbers, not a header; add a header row naming the columns "
                        f"(e.g. f1,f2,...,{label_column})")
    if label_column not in header:
        raise DataError(f"{path}: no label column {label_column!r}; columns are {header}; set label_column=NAME")
    body = rows[1:]
    if not body:
        raise DataError(f"{path}: has a header but no data rows; add one row per example")
    li = header.index(label_column)
    si = header.index("split") if "split" in header and label_column != "split" else None
    feats = [i for i in range(len(header)) if i not in (li, si)]
    if not feats:
        raise DataError(f"{path}: no feature columns besides {label_column!r}; add numeric feature columns")
    x = np.empty((len(body), len(feats)), np.float32)
    for r, row in enumerate(body):
        if len(row) != len(header):
            raise DataError(f"{path}: row {r + 2} has {len(row)} fields, the header {len(header)}; fix that row")
        for j, i in enumerate(feats):
            try:
                x[r, j] = float(row[i])
            except ValueError:
                raise DataError(f"{path}: row {r + 2}, column {header[i]!r}: {row[i]!r} is not a number; feature "
                                "columns must be numeric") from None
    y = np.array([row[li].strip() for row in body])
    if si is None:
        return {"all": (x, y)}
    split = np.array([row[si].strip().lower() for row in body])
    bad = sorted(set(split) - {"train", "test"})
    if bad:
        raise DataError(f"{path}: column 'split' has values {bad}; use train or test (or remove the column)")
    return {s: (x[split == s], y[split == s]) for s in ("train", "test")}


# ---------------------------------------------------------------- Hugging Face datasets
def is_hf_dataset_folder(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def read_hf_dataset(folder: Path, *, input_column: str | None, label_column: str, size, mode) -> tuple[Parts, list]:
    try:
        import datasets
    except ImportError:
        raise DataError(f"{folder}: reading a saved Hugging Face dataset needs the 'datasets' package; "
                        "install it with: pip install datasets") from None
    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as e:
        raise DataError(f"{folder}: datasets.load_from_disk cannot read it ({e}); save it with "
                        "dataset.save_to_disk(folder)") from None
    if isinstance(loaded, datasets.DatasetDict):
        test_name = "test" if "test" in loaded else "validation" if "validation" in loaded else None
        if "train" not in loaded:
            raise DataError(f"{folder}: the DatasetDict has splits {list(loaded)}; it needs a 'train' split "
                            "(and 'test' or 'validation')")
        tables = {"train": loaded["train"], "test": loaded[test_name]} if test_name else {"all": loaded["train"]}
    else:
        tables = {"all": loaded}
    columns = list(next(iter(tables.values())).column_names)
    col = input_column or next((c for c in HF_INPUT_COLUMNS if c in columns), None)
    if col is None or col not in columns:
        raise DataError(f"{folder}: no input column {input_column or 'among ' + str(list(HF_INPUT_COLUMNS))}; columns "
                        f"are {columns}; set input_column=NAME")
    if label_column not in columns:
        raise DataError(f"{folder}: no label column {label_column!r}; columns are {columns}; set label_column=NAME")
    first = tables[next(iter(tables))][0][col]
    if isinstance(first, str):
        raise DataError(f"{folder}: input column {col!r} holds text; for sentence encoders use a .txt file of "
                        "sentences, for classifiers give numeric or image columns")
    is_image = hasattr(first, "convert") and hasattr(first, "size")
    if is_image:
        size, mode = tuple(size or (first.height, first.width)), mode or (
            "L" if first.mode in ("1", "L", "LA", "I", "F") else "RGB")
        sample = _to_array(first, size, mode)
    else:
        sample = np.asarray(first, dtype=np.float32)
    names = getattr(tables[next(iter(tables))].features.get(label_column), "names", None)
    parts: Parts = {}
    for split, table in tables.items():
        parts[split] = (_hf_lazy(table, col, sample.shape, is_image, size, mode, folder),
                        np.asarray(table[label_column]))
    return parts, list(names) if names else None


def _hf_lazy(table, col: str, shape, is_image: bool, size, mode, where: Path) -> LazyArray:
    table = table.select_columns([col])

    def read(idx: np.ndarray) -> np.ndarray:
        values = table[idx.tolist()][col] if len(idx) else []
        out = np.empty((len(idx), *shape), np.float32)
        for k, v in enumerate(values):
            a = _to_array(v, size, mode) if is_image else np.asarray(v, dtype=np.float32)
            if a.shape != tuple(shape):
                raise DataError(f"{where}: row {int(idx[k])} of column {col!r} has shape {a.shape}, the first row "
                                f"{tuple(shape)}; every example needs the same shape")
            out[k] = a
        return out

    return LazyArray(read, len(table), tuple(shape))


# ---------------------------------------------------------------- Python callables
def import_callable(path: str) -> Callable:
    mod_name, _, qual = path.partition(":")
    try:
        obj: Any = importlib.import_module(mod_name)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except ImportError as e:
        raise DataError(f"{path}: cannot import module {mod_name!r} ({e}); install it or add its folder to "
                        "PYTHONPATH") from None
    except AttributeError:
        raise DataError(f"{path}: module {mod_name!r} has no {qual!r}; check the name after ':'") from None
    if not callable(obj):
        raise DataError(f"{path}: is not callable; point at a function returning (x, y) arrays or a Dataset")
    return obj


def read_callable(path: str) -> Parts:
    """Call ``pkg.mod:fn``; with a ``split`` parameter it is called for "train"
    and "test" (its own split), else once. It may return ``(x, y)``, a dict of
    arrays (x/y or x_train/y_train/x_test/y_test), an ArrayDataset, a torch
    map-style Dataset of ``(x, y)`` pairs, or ``{"train": ..., "test": ...}``."""
    fn = import_callable(path)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if "split" in params:
        return {s: _one_part(fn(split=s), f"{path}(split={s!r})") for s in ("train", "test")}
    out = fn()
    if isinstance(out, dict) and set(out) >= {"train", "test"}:
        return {s: _one_part(out[s], f"{path}()[{s!r}]") for s in ("train", "test")}
    if isinstance(out, dict) and {"x_train", "y_train", "x_test", "y_test"} <= set(out):
        return {"train": (out["x_train"], out["y_train"]), "test": (out["x_test"], out["y_test"])}
    return {"all": _one_part(out, f"{path}()")}


def _one_part(out, where: str) -> tuple[Any, Any]:
    if isinstance(out, (tuple, list)) and len(out) == 2 and not isinstance(out[0], (str, bytes)):
        return out[0], out[1]
    if isinstance(out, dict) and {"x", "y"} <= set(out):
        return out["x"], out["y"]
    if hasattr(out, "x") and hasattr(out, "y"):  # an ArrayDataset or StreamingDataset
        return out.x, out.y
    if isinstance(out, torch.utils.data.Dataset) and hasattr(out, "__len__"):
        return _torch_dataset_part(out, where)
    raise DataError(f"{where}: returned {type(out).__name__}; return (x, y) arrays, a dict of arrays (x, y), or a "
                    "torch Dataset of (x, y) pairs")


def _torch_dataset_part(ds, where: str) -> tuple[Any, Any]:
    n = len(ds)
    if n == 0:
        raise DataError(f"{where}: the Dataset is empty; it must hold at least one (x, y) pair")
    first = ds[0]
    if not (isinstance(first, (tuple, list)) and len(first) >= 2):
        raise DataError(f"{where}: ds[0] is {type(first).__name__}; the Dataset must return (x, y) pairs")
    shape = tuple(torch.as_tensor(first[0]).shape)
    labels = getattr(ds, "targets", None)
    if labels is None:
        labels = getattr(ds, "labels", None)
    if labels is None:  # read every label once (the inputs are read again lazily)
        labels = [int(torch.as_tensor(ds[i][1])) for i in range(n)]

    def read(idx: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(torch.as_tensor(ds[int(i)][0]), dtype=np.float32) for i in idx]) if len(idx) \
            else np.empty((0, *shape), np.float32)

    return LazyArray(read, n, shape), np.asarray(torch.as_tensor(labels))


def as_inputs(x) -> Any:
    """Arrays and tensors as numpy (memory-maps stay mapped), LazyArrays as they are."""
    if isinstance(x, (LazyArray, np.ndarray)):
        return x
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, StreamingDataset):
        return x.x
    try:
        return np.asarray(x)
    except Exception as e:
        raise DataError(f"inputs of type {type(x).__name__} are not an array ({e})") from None
