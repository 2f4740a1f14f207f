"""Bring your own data: every source format on tiny data made here, the split
rule, streaming against the in-memory fast path, and every error path."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from torchslim.analysis.evaluate import evaluate
from torchslim.core.errors import ConfigError, DataError
from torchslim.zoo import Loader, StreamingDataset, build_model, dataset_info, load_dataset
from torchslim.zoo.data import ArrayDataset
from torchslim.zoo.user_data import (TextDataset, check_data_fits, is_user_data, load_text, parse_data_spec,
                                     spec_string, stratified_split)


def _arrays(n=60, features=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, features), dtype=np.float32), (np.arange(n) % classes).astype(np.int64)


@pytest.fixture
def npz(tmp_path):
    x, y = _arrays()
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=y)
    return str(path), x, y


def _images(root: Path, classes=("cat", "dog"), per_class=6, size=(10, 12), seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(root / c / f"{i}.png")
    return root


# ---------------------------------------------------------------- split rule
def test_stratified_split_is_seeded_and_keeps_class_shares():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    tr, te = stratified_split(y, 0.2, seed=0)
    assert len(set(tr) & set(te)) == 0 and len(tr) + len(te) == 100
    assert np.bincount(y[te]).tolist() == [10, 6, 4]
    tr2, te2 = stratified_split(y, 0.2, seed=0)
    assert np.array_equal(te, te2)
    assert not np.array_equal(te, stratified_split(y, 0.2, seed=1)[1])


# ---------------------------------------------------------------- arrays
def test_npz_round_trip_with_a_seeded_stratified_split(npz):
    path, x, y = npz
    tr, te = load_dataset(path, "train"), load_dataset(path, "test")
    assert isinstance(tr, ArrayDataset) and tr.x.dtype == torch.float32
    assert len(tr) + len(te) == 60 and len(te) == 12  # 20% of each class
    assert torch.bincount(te.y).tolist() == [4, 4, 4]
    got = torch.cat([tr.x, te.x]).numpy()
    assert sorted(map(tuple, got.round(6))) == sorted(map(tuple, x.round(6)))  # every row, once
    info = dataset_info(path)
    assert info.input_shape == (4,) and info.num_classes == 3 and "20% test" in info.description
    model = build_model("mlp", dataset=path, hidden=[8])  # the zoo sizes the model for the data
    assert model(tr.x[:2]).shape == (2, 3)


def test_npz_with_its_own_split(tmp_path):
    x, y = _arrays(20)
    path = tmp_path / "own.npz"
    np.savez(path, x_train=x[:15], y_train=y[:15], x_test=x[15:], y_test=y[15:])
    tr, te = load_dataset(str(path), "train"), load_dataset(str(path), "test")
    assert torch.equal(tr.x, torch.from_numpy(x[:15])) and torch.equal(te.y, torch.from_numpy(y[15:]))
    assert "its own split" in dataset_info(str(path)).description


def test_npy_pair_and_folders(tmp_path):
    x, y = _arrays(30)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    pair = f"{tmp_path / 'x.npy'}:{tmp_path / 'y.npy'}"
    a = load_dataset(pair, "train")
    b = load_dataset(str(tmp_path), "train")  # a folder holding x.npy and y.npy
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    other = tmp_path / "named"
    other.mkdir()
    np.save(other / "inputs.npy", x)
    np.save(other / "labels.npy", y)
    assert torch.equal(load_dataset(str(other), "test").x, load_dataset(pair, "test").x)


def test_streamed_npy_matches_the_in_memory_path(tmp_path):
    x, y = _arrays(64, features=6)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    base = f"{tmp_path / 'x.npy'}:{tmp_path / 'y.npy'}"
    mem, lazy = load_dataset(base, "train"), load_dataset(base + "?stream=true", "train")
    assert isinstance(lazy, StreamingDataset) and isinstance(mem, ArrayDataset)
    assert lazy.x.shape == mem.x.shape and torch.equal(lazy.x[3:9], mem.x[3:9])
    idx = torch.tensor([5, 0, 7])
    assert torch.equal(lazy.x[idx], mem.x[idx]) and torch.equal(lazy.subset(idx).x[:], mem.subset(idx).x)
    # the shuffled Loader (hence fit) sees exactly the same batches
    for (xa, ya), (xb, yb) in zip(Loader(mem, 16, shuffle=True, seed=2), Loader(lazy, 16, shuffle=True, seed=2)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    model = build_model("mlp", dataset=base, hidden=[8])
    e_mem, e_lazy = evaluate(model, mem, batch_size=10), evaluate(model, lazy, batch_size=10)
    assert e_mem["accuracy"] == e_lazy["accuracy"] and e_mem["confusion_matrix"] == e_lazy["confusion_matrix"]
    # also a real torch DataLoader (worker processes read ahead) and evaluate over it
    dl = lazy.dataloader(16, num_workers=2)
    assert evaluate(model, dl)["confusion_matrix"] == e_mem["confusion_matrix"]
    from torchslim.train import TrainConfig, fit

    fit(model, lazy, TrainConfig(epochs=1, batch_size=16), progress=False)
    assert len(lazy.materialize()) == len(lazy)


def test_int64_inputs_for_token_ids(tmp_path):
    ids = np.random.default_rng(0).integers(3, 100, (20, 8))
    np.savez(tmp_path / "tok.npz", x=ids, y=np.arange(20) % 2)
    d = load_dataset(str(tmp_path / "tok.npz") + "?dtype=int64", "train")
    assert d.x.dtype == torch.int64
    np.savez(tmp_path / "bad.npz", x=ids + 0.5, y=np.arange(20) % 2)
    with pytest.raises(DataError, match="whole-number"):
        load_dataset(str(tmp_path / "bad.npz") + "?dtype=int64", "train")


# ---------------------------------------------------------------- images
def test_image_folder_reads_resizes_and_splits(tmp_path):
    root = _images(tmp_path / "imgs")
    spec = f"{root}?size=8x8&mode=L"
    tr, te = load_dataset(spec, "train"), load_dataset(spec, "test")
    assert tr.x.shape[1:] == (1, 8, 8) and len(tr) + len(te) == 12
    assert 0.0 <= float(tr.x.min()) and float(tr.x.max()) <= 1.0
    assert sorted(torch.cat([tr.y, te.y]).tolist()) == [0] * 6 + [1] * 6
    rgb = load_dataset(str(root), "train")  # defaults: the first image's size and mode
    assert rgb.x.shape[1:] == (3, 10, 12)
    lazy = load_dataset(f"{root}?stream=true", "train")
    assert isinstance(lazy, StreamingDataset) and torch.equal(lazy.x[:], rgb.x)
    assert dataset_info(spec).num_classes == 2


def test_image_folder_with_train_and_test_folders(tmp_path):
    _images(tmp_path / "split" / "train", per_class=3)
    _images(tmp_path / "split" / "test", per_class=2, seed=1)
    tr, te = load_dataset(str(tmp_path / "split"), "train"), load_dataset(str(tmp_path / "split"), "test")
    assert (len(tr), len(te)) == (6, 4)


def test_unreadable_or_misplaced_images(tmp_path):
    root = _images(tmp_path / "imgs", per_class=3)
    (root / "dog" / "9.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"9\.png: cannot read this image.*remove or replace"):
        load_dataset(f"{root}?size=8", "train")
    from PIL import Image

    loose = tmp_path / "loose"
    loose.mkdir()
    Image.new("RGB", (4, 4)).save(loose / "0.png")
    with pytest.raises(DataError, match=r"no class sub-folders \(images lie loose in it\)"):
        load_dataset(f"{loose}?kind=images", "train")
    empty = _images(tmp_path / "e", per_class=2)
    (empty / "bird").mkdir()
    with pytest.raises(DataError, match="bird: class folder with no images"):
        load_dataset(str(empty), "train")


# ---------------------------------------------------------------- CSV
def test_csv_features_and_labels(tmp_path):
    rows = "\n".join(f"{i},{i * 0.5},{'yes' if i % 2 else 'no'}" for i in range(20))
    (tmp_path / "t.csv").write_text("a,b,label\n" + rows + "\n")
    tr = load_dataset(str(tmp_path / "t.csv"), "train")
    assert tr.x.shape == (16, 2) and set(tr.y.tolist()) == {0, 1}  # "no" -> 0, "yes" -> 1 (sorted names)
    (tmp_path / "c.csv").write_text("f1,f2,target,split\n" + "\n".join(
        f"{i},{-i},{i % 3},{'test' if i < 3 else 'train'}" for i in range(12)))
    spec = f"{tmp_path / 'c.csv'}?label_column=target"
    assert len(load_dataset(spec, "test")) == 3 and load_dataset(spec, "train").x.shape == (9, 2)


@pytest.mark.parametrize("text, match", [
    ("1,2,0\n3,4,1\n", "not a header"),
    ("a,b,cls\n1,2,0\n", r"no label column 'label'; columns are \['a', 'b', 'cls'\]; set label_column"),
    ("a,b,label\n", "no data rows"),
    ("a,b,label\n1,x,0\n", r"row 2, column 'b': 'x' is not a number"),
    ("a,label\n1,0.5\n2,1\n", "0.5 at index 0 is not an integer"),
    ("a,label\n1,-1\n2,1\n", "found -1 at index 0"),
])
def test_csv_errors(tmp_path, text, match):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        load_dataset(str(tmp_path / "bad.csv"), "train")


# ---------------------------------------------------------------- Hugging Face datasets
def test_saved_hf_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    x, y = _arrays(30, features=5)
    datasets.Dataset.from_dict({"feats": x.tolist(), "cls": y.tolist()}).save_to_disk(str(tmp_path / "one"))
    spec = f"{tmp_path / 'one'}?input_column=feats&label_column=cls"
    tr, te = load_dataset(spec, "train"), load_dataset(spec, "test")
    assert tr.x.shape == (24, 5) and len(te) == 6
    lazy = load_dataset(spec + "&stream=true", "train")
    assert torch.allclose(lazy.x[:], tr.x)
    with pytest.raises(DataError, match=r"no label column 'label'.*set label_column"):
        load_dataset(f"{tmp_path / 'one'}?input_column=feats", "train")
    with pytest.raises(DataError, match="no input column.*set input_column"):
        load_dataset(f"{tmp_path / 'one'}?label_column=cls", "train")
    from PIL import Image

    imgs = [Image.new("L", (6, 6), color=i * 20) for i in range(8)]
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"image": imgs[:6], "label": [0, 1] * 3}),
                               "test": datasets.Dataset.from_dict({"image": imgs[6:], "label": [0, 1]})})
    dd.save_to_disk(str(tmp_path / "dd"))
    tr = load_dataset(str(tmp_path / "dd"), "train")
    assert tr.x.shape == (6, 1, 6, 6) and len(load_dataset(str(tmp_path / "dd"), "test")) == 2
    assert abs(float(tr.x[1].mean()) - 20 / 255) < 1e-6


# ---------------------------------------------------------------- Python callables
_MODULE = '''
import numpy as np, torch

def arrays():
    rng = np.random.default_rng(0)
    return rng.random((20, 3), dtype=np.float32), np.arange(20) % 2

def by_split(split):
    n = 10 if split == "train" else 4
    return {"x": np.ones((n, 3), np.float32), "y": np.zeros(n, np.int64)}

class Pairs(torch.utils.data.Dataset):
    def __len__(self):
        return 10
    def __getitem__(self, i):
        return torch.full((2,), float(i)), i % 2

def dataset():
    return Pairs()

def nonsense():
    return "hello"

def mismatched():
    return np.zeros((5, 3), np.float32), np.zeros(4, np.int64)

def empty():
    return np.zeros((0, 3), np.float32), np.zeros(0, np.int64)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_data_mod.py").write_text(_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_data_mod"
    sys.modules.pop("my_data_mod", None)


def test_callables(user_module):
    assert len(load_dataset(f"{user_module}:arrays", "train")) == 16
    by_split = f"{user_module}:by_split"  # called per split: its own split
    assert (len(load_dataset(by_split, "train")), len(load_dataset(by_split, "test"))) == (10, 4)
    d = load_dataset(f"{user_module}:dataset", "train")
    assert d.x.shape == (8, 2) and all(float(d.x[i, 0]) % 2 == d.y[i] for i in range(len(d)))
    with pytest.raises(DataError, match="returned str; return"):
        load_dataset(f"{user_module}:nonsense", "train")
    with pytest.raises(DataError, match="5 inputs but 4 labels"):
        load_dataset(f"{user_module}:mismatched", "train")
    with pytest.raises(DataError, match="holds no examples"):
        load_dataset(f"{user_module}:empty", "train")
    with pytest.raises(DataError, match="has no 'missing'"):
        load_dataset(f"{user_module}:missing", "train")


# ---------------------------------------------------------------- text
def test_sentences_tokenised_for_minilm(tmp_path):
    (tmp_path / "s.txt").write_text("Hello world.\n\nThe cat sat on the mat.\nA third sentence here.\nFour.\n")
    data = load_text(str(tmp_path / "s.txt"))
    assert isinstance(data, TextDataset) and len(data) == 4 and data.sentences[1] == "The cat sat on the mat."
    ids, mask = data.inputs()
    assert ids.shape == mask.shape and ids.dtype == torch.long and mask[3].sum() < mask[1].sum()
    assert data.subset([1, 2]).sentences == ("The cat sat on the mat.", "A third sentence here.")
    assert len(load_dataset(str(tmp_path / "s.txt"), "train")) == 3  # a seeded 80/20 split of sentences
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="holds no sentences"):
        load_text(str(tmp_path / "blank.txt"))


# ---------------------------------------------------------------- specs and recipes
def test_specs_parse_and_name_their_errors(npz, tmp_path):
    path = npz[0]
    assert spec_string({"path": path, "seed": 3, "test_fraction": 0.5}) == f"{path}?seed=3&test_fraction=0.5"
    assert parse_data_spec(f"{path}?seed=3,test_fraction=0.5").get("seed") == 3
    assert is_user_data(path) and is_user_data("x.npz") and not is_user_data("mnist") and not is_user_data("cifar")
    for spec, match in [
        (str(tmp_path / "nope.npz"), "no such file or folder"),
        (f"{path}?colour=red", r"unknown option\(s\) \['colour'\]"),
        (f"{path}?size=8", r"option\(s\) \['size'\] do not apply to npz data"),
        (f"{path}?test_fraction=1.5", r"must be in \[0.0, 1.0\)"),
        (f"{path}?seed", "is not key=value"),
    ]:
        with pytest.raises(DataError, match=match):
            load_dataset(spec, "train")
    np.save(tmp_path / "lonely.npy", np.zeros((3, 2)))
    with pytest.raises(DataError, match="one .npy has no labels"):
        load_dataset(str(tmp_path / "lonely.npy"), "train")
    np.savez(tmp_path / "keys.npz", a=np.zeros(3))
    with pytest.raises(DataError, match=r"has arrays \['a'\]; name them x and y"):
        load_dataset(str(tmp_path / "keys.npz"), "train")
    with pytest.raises(DataError, match="unknown data set 'cifar'"):
        load_dataset("cifar", "train")


def test_array_errors(tmp_path):
    x, y = _arrays(10)
    cases = {"len": (x, y[:7], "10 inputs but 7 labels"), "empty": (x[:0], y[:0], "holds no examples"),
             "float": (x, y + 0.25, "is not an integer"), "neg": (x, y - 1, "found -1"),
             "flat": (x[:, 0], y, r"shape \(10,\); give one row per example")}
    for name, (xx, yy, match) in cases.items():
        np.savez(tmp_path / f"{name}.npz", x=xx, y=yy)
        with pytest.raises(DataError, match=match):
            load_dataset(str(tmp_path / f"{name}.npz"), "train")


def test_recipe_data_spec_and_holdout(npz):
    from torchslim.recipe.runner import _data
    from torchslim.recipe.schema import load_recipe

    path = npz[0]
    base = {"model": "mlp", "stages": [{"kind": "train", "epochs": 1}]}
    r = load_recipe({**base, "data": {"dataset": {"path": path, "seed": 1}, "holdout": 10}})
    assert r.data.dataset == f"{path}?seed=1" and load_recipe(r.to_dict()).data == r.data
    train, test, calib = _data(r)
    assert (len(train), len(calib), len(test)) == (38, 10, 12)
    with pytest.raises(ConfigError, match=r"data.dataset: .*nope.npz: no such file"):
        load_recipe({**base, "data": {"dataset": path.replace("data.npz", "nope.npz")}})
    with pytest.raises(ConfigError, match="data.dataset: unknown data set 'cifar'"):
        load_recipe({**base, "data": {"dataset": "cifar"}})


# ---------------------------------------------------------------- fit to the model
def test_check_data_fits_names_shape_and_label_errors(npz, tmp_path):
    path = npz[0]
    data = load_dataset(path, "train")
    check_data_fits(build_model("mlp", dataset=path, hidden=[8]), data)
    with pytest.raises(DataError, match=r"inputs of shape 4 per example do not fit the model.*it takes 1x28x28"):
        check_data_fits(build_model("lenet5"), data, where="my data")
    with pytest.raises(DataError, match="labels go up to 2 but the model has 2 outputs"):
        check_data_fits(build_model("mlp", input_shape=[4], num_classes=2, hidden=[8]), data)


def test_cli_train_and_eval_on_an_npz(npz, tmp_path, capsys):
    import json

    from torchslim.cli import main

    path = npz[0]
    out = tmp_path / "run"
    assert main(["train", "mlp", "--dataset", path, "--epochs", "1", "--out", str(out), "--no-progress",
                 "--json"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out / "model.safetensors"), "--dataset", path, "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["n"] == 12 and m["dataset"] == path
    import torchslim

    other = torchslim.save(build_model("mlp", input_shape=[7], hidden=[8]), tmp_path / "other.safetensors")
    assert main(["eval", str(other), "--dataset", path]) == 2  # a model that cannot take the data: one clear line
    err = capsys.readouterr().err
    assert "do not fit the model" in err and len(err.strip().splitlines()) == 1


def test_recipe_checks_the_data_against_the_model_before_any_stage(npz, tmp_path):
    import torchslim
    from torchslim.recipe import run_recipe

    other = torchslim.save(build_model("mlp", input_shape=[7], hidden=[8]), tmp_path / "other.safetensors")
    recipe = {"model": {"artifact": str(other)}, "data": {"dataset": npz[0], "holdout": 5},
              "stages": [{"kind": "train", "epochs": 1}]}
    with pytest.raises(DataError, match=r"data.dataset '.*data.npz': inputs of shape 4 per example do not fit"):
        run_recipe(recipe, tmp_path / "run", progress=False, html=False)
    assert not (tmp_path / "run" / "baseline.json").exists()
