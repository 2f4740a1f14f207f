"""Layers that differ from a fresh build only in their widths (structured
pruning, dead-unit removal) are recorded in a compact artifact by name
(``resized``), their widths read back from the stored weights' shapes."""
import torch

import torchslim
from torchslim.codec.compact import read_compact, save_compact
from torchslim.codec.container import write_container
from torchslim.prune.dead import remove_dead_units
from torchslim.zoo import build_model


def _shrunk(arch):
    torch.manual_seed(0)
    model = build_model(arch, dataset="mnist").eval()
    names = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    with torch.no_grad():
        for i, n in enumerate(names[:-1]):
            reader = getattr(model, names[i + 1])
            k = reader.weight.shape[1] // getattr(model, n).weight.shape[0]
            reader.weight[:, :3 * k] = 0  # three unread units per layer
    remove_dead_units(model, (torch.rand(1, 1, 28, 28),))
    return model, names


def test_resized_layers_cost_their_name_and_load_back(tmp_path):
    for arch in ("lenet300", "lenet5"):
        model, names = _shrunk(arch)
        save_compact(model, tmp_path / "m.tslim")
        meta, _ = read_compact(tmp_path / "m.tslim")
        assert meta["structure"] == {} and sorted(meta["resized"]) == sorted(names)
        back = torchslim.load(tmp_path / "m.tslim")
        x = torch.rand(4, 1, 28, 28)
        with torch.no_grad():
            assert torch.equal(back(x), model(x))
        assert [getattr(back, n).weight.shape for n in names] == [getattr(model, n).weight.shape for n in names]


def test_full_structure_records_still_load(tmp_path):
    """Artifacts written before ``resized`` existed hold full specs."""
    from torchslim.artifact import specs

    model, names = _shrunk("lenet5")
    save_compact(model, tmp_path / "new.tslim")
    meta, state = read_compact(tmp_path / "new.tslim")
    sections = [(n, p) for n, p in __import__("torchslim.codec.container", fromlist=["x"]).read_container(
        (tmp_path / "new.tslim").read_bytes())[1]]
    full = {n: s for n, s in specs.record_structure(model).items() if n in names}
    old = {k: v for k, v in meta.items() if k not in ("resized", "sections")}
    (tmp_path / "old.tslim").write_bytes(write_container({**old, "structure": full}, sections))
    back = torchslim.load(tmp_path / "old.tslim")
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    assert (tmp_path / "new.tslim").stat().st_size < (tmp_path / "old.tslim").stat().st_size


def test_a_layer_changed_otherwise_keeps_its_full_spec(tmp_path):
    model = build_model("lenet5", dataset="mnist").eval()
    model.conv1 = torch.nn.Conv2d(1, 20, 5, padding=0, bias=False)  # not a width change
    save_compact(model, tmp_path / "m.tslim")
    meta, _ = read_compact(tmp_path / "m.tslim")
    assert "conv1" in meta["structure"] and "conv1" not in meta.get("resized", [])
    back = torchslim.load(tmp_path / "m.tslim")
    assert back.conv1.bias is None


def test_resized_files_are_version_2_and_old_readers_refuse_them(tmp_path, monkeypatch):
    import pytest

    from torchslim.codec import container
    from torchslim.codec.container import MAGIC
    from torchslim.core.errors import ArtifactError

    model, _ = _shrunk("lenet300")
    save_compact(model, tmp_path / "new.tslim")
    save_compact(build_model("lenet300", dataset="mnist"), tmp_path / "plain.tslim")
    assert (tmp_path / "new.tslim").read_bytes()[len(MAGIC)] == 2
    assert (tmp_path / "plain.tslim").read_bytes()[len(MAGIC)] == 1  # nothing new: readable by version-1 readers
    monkeypatch.setattr(container, "CONTAINER_VERSION", 1)  # a reader from before "resized"
    with pytest.raises(ArtifactError, match="version 2 is newer"):
        read_compact(tmp_path / "new.tslim")
    read_compact(tmp_path / "plain.tslim")
