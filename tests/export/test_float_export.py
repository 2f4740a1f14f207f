import os

import numpy as np
import onnx
import pytest
import torch

from .export_models import SmallCNN, TokenMLP
from torchslim.export import OrtModel, to_onnx


@pytest.mark.parametrize("cls,shape", [(SmallCNN, (3, 1, 14, 14)), (TokenMLP, (2, 5, 24))])
def test_float_export_matches_torch_and_batch_is_dynamic(tmp_path, cls, shape):
    model = cls().eval()
    x = torch.randn(*shape)
    path = to_onnx(model, tmp_path / "m.onnx", (x,))
    assert [f for f in os.listdir(tmp_path)] == ["m.onnx"]  # atomic write: no temp file left
    proto = onnx.load(path)
    assert proto.opset_import[0].version == 17
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["output"]
    ort_model = OrtModel(path)
    for n in (1, 7):  # other batch sizes than the example
        xb = torch.randn(n, *shape[1:])
        with torch.no_grad():
            ref = model(xb)
        torch.testing.assert_close(ort_model(xb), ref, atol=1e-5, rtol=1e-5)


def test_names_and_axes_can_be_given(tmp_path):
    model = TokenMLP().eval()
    x = torch.randn(2, 5, 24)
    path = to_onnx(model, tmp_path / "m.onnx", (x,), input_names=["tokens"], output_names=["hidden"],
                   dynamic_axes={"tokens": {0: "b", 1: "s"}, "hidden": {0: "b", 1: "s"}})
    m = OrtModel(path, threads=1)
    assert m.input_names == ["tokens"] and m.output_names == ["hidden"]
    xb = torch.randn(3, 9, 24)
    with torch.no_grad():
        torch.testing.assert_close(m(xb), model(xb), atol=1e-5, rtol=1e-5)


def test_bad_int8_mode_is_rejected(tmp_path):
    from torchslim.core import ConfigError

    with pytest.raises(ConfigError, match="int8"):
        to_onnx(TokenMLP(), tmp_path / "m.onnx", (torch.randn(1, 2, 24),), int8="int4")
    with pytest.raises(ConfigError, match="calib"):
        to_onnx(SmallCNN(), tmp_path / "m.onnx", (torch.randn(1, 1, 14, 14),), int8="static")
