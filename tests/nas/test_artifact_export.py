"""An extracted subnet is a plain model: it round-trips through
torchslim.save / torchslim.load (narrower layers recorded by spec, skipped
blocks as Identity) and runs in ONNX Runtime through the existing export."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from torchslim.artifact import load, read_metadata, save
from torchslim.nas import ElasticSupernet


def _subnet(src, name):
    sn = ElasticSupernet(src)
    cfg = sn.min_config()
    if name == "mobilenet":  # a mix: some blocks kept with 1x1 depthwise kernels, some skipped
        cfg = {**sn.max_config(), "depth.features.4": 1, "width.features.4": 24, "width.features.2.hidden": 32,
               "kernel.features.3.conv.3": 1, "kernel.features.2.conv.3": 1}
    return sn.extract(cfg)


@pytest.mark.parametrize("name", ["resnet", "mobilenet"])
def test_save_load_round_trip(name, request, tmp_path, x28):
    sub = _subnet(request.getfixturevalue(name), name)
    path = save(sub, tmp_path / "sub.safetensors")
    meta = read_metadata(path)
    assert "zoo" in meta["arch"]  # rebuilt from the zoo model, resized by the recorded specs
    back = load(path)
    assert type(back) is type(sub)
    with torch.no_grad():
        assert torch.equal(back(x28), sub(x28))
    shapes = {k: tuple(v.shape) for k, v in sub.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in back.state_dict().items()}
    if name == "resnet":
        assert isinstance(back.layer1[0], nn.Identity)
    else:
        assert isinstance(back.features[5], nn.Identity) and back.features[3].conv[3].kernel_size == (1, 1)


def test_subnet_runs_in_onnx_runtime(mobilenet, tmp_path, x28):
    pytest.importorskip("onnxruntime")
    from torchslim.export import OrtModel, to_onnx

    sub = _subnet(mobilenet, "mobilenet")
    ort = OrtModel(to_onnx(sub, tmp_path / "sub.onnx", (x28[:1],)), threads=1)
    with torch.no_grad():
        torch.testing.assert_close(ort(x28), sub(x28), rtol=1e-4, atol=1e-4)  # dynamic batch
