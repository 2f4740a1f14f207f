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


def _ops(proto):
    return [n.op_type for n in proto.graph.node]


@pytest.mark.parametrize("mean,std,kept", [(0.0, 1.0, False), (0.1307, 0.3081, True), (0.0, 0.5, True)])
def test_identity_normalisation_is_dropped_and_outputs_unchanged(tmp_path, mean, std, kept):
    from torchslim.zoo import build_model

    torch.manual_seed(0)
    model = build_model("resnet8", mean=mean, std=std).eval()
    x = torch.rand(3, 1, 28, 28)
    proto = onnx.load(to_onnx(model, tmp_path / "m.onnx", (x,)))
    ops = _ops(proto)
    assert ("Sub" in ops) == (mean != 0.0) and ("Div" in ops) == (std != 1.0)
    assert ("Sub" in ops or "Div" in ops) == kept
    onnx.checker.check_model(proto)
    with torch.no_grad():
        torch.testing.assert_close(OrtModel(tmp_path / "m.onnx")(x), model(x), atol=1e-5, rtol=1e-5)


def test_drop_identity_arithmetic_oracle():
    """Hand-built graph: only the scalar neutral constants on the right side go."""
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime import InferenceSession

    from torchslim.export.simplify import drop_identity_arithmetic

    def init(name, v):
        return numpy_helper.from_array(np.asarray(v, dtype=np.float32), name)

    nodes = [
        helper.make_node("Sub", ["x", "zero"], ["a"]),      # x - 0: dropped
        helper.make_node("Sub", ["zero", "a"], ["b"]),      # 0 - a: kept (negation)
        helper.make_node("Mul", ["one", "b"], ["c"]),       # 1 * b: dropped
        helper.make_node("Add", ["c", "vec0"], ["d"]),      # + zeros of shape (1, 4): kept (could broadcast)
        helper.make_node("Div", ["d", "two"], ["e"]),       # / 2: kept
        helper.make_node("Div", ["e", "one"], ["y"]),       # graph output: kept
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
                              [init("zero", 0.0), init("one", 1.0), init("two", 2.0), init("vec0", np.zeros((1, 4)))])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    ref = InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    out = drop_identity_arithmetic(proto)
    assert _ops(out) == ["Sub", "Add", "Div", "Div"]
    onnx.checker.check_model(out)
    got = InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(ref, -x / 2)
