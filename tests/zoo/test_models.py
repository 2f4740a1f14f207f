import pytest
import torch

from torchslim.core import ModelError
from torchslim.zoo import build_model, example_inputs, model_names

CNN_AND_MLP = ["lenet300", "lenet5", "mlp", "resnet8", "mobilenetv2", "vit"]


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_paper_parameter_counts():
    assert n_params(build_model("lenet300", dataset="mnist")) == 266_610
    assert n_params(build_model("lenet5", dataset="mnist")) == 431_080


@pytest.mark.parametrize("name", CNN_AND_MLP)
def test_accepts_flat_and_image_input_and_traces(name):
    m = build_model(name, dataset="mnist").eval()
    x = torch.rand(3, 1, 28, 28)
    out_img, out_flat = m(x), m(x.reshape(3, 784))
    assert out_img.shape == (3, 10)
    torch.testing.assert_close(out_img, out_flat)
    gm = torch.fx.symbolic_trace(m)
    torch.testing.assert_close(gm(x), out_img)
    assert m.torchslim_arch["zoo"] == name


def test_normalisation_is_inside_the_model_not_a_parameter():
    m = build_model("lenet5", dataset="mnist")
    assert float(m.norm.mean) == pytest.approx(0.1307)
    assert "norm.mean" in m.state_dict() and "norm.mean" not in dict(m.named_parameters())


def test_other_datasets_and_errors():
    m = build_model("lenet300", dataset="digits")
    assert m(torch.rand(2, 64)).shape == (2, 10)
    assert build_model("vit", dataset="digits", patch=4)(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    assert build_model("lenet300", dataset="mnist1d")(torch.rand(2, 40)).shape == (2, 10)
    with pytest.raises(ModelError, match="16x16"):
        build_model("lenet5", dataset="digits")
    with pytest.raises(ModelError, match="known zoo models"):
        build_model("alexnet")
    assert set(CNN_AND_MLP) <= set(model_names())


def test_example_inputs_shape():
    (x,) = example_inputs(build_model("lenet5", dataset="mnist"), batch=4)
    assert x.shape == (4, 1, 28, 28)
