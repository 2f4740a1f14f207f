"""The plain call on every architecture of the Hugging Face suite:
``prune.structured(model, inputs, ratio=0.5, target="macs")`` must bring the
FLOPs (as FlopCounterMode counts them) to at most 57.5%, keep the output
shapes, stay finite, and survive ``torchslim.save`` / ``torchslim.load``."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

pytest.importorskip("transformers")

import torchslim  # noqa: E402
from torchslim.graph.export import output_tensors  # noqa: E402
from torchslim.testing.hf_suite import SUITE, build  # noqa: E402


def _flops(model, x) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*x)
    return fc.get_total_flops()


def _outs(model, x):
    with torch.no_grad():
        return output_tensors(model(*x))


@pytest.mark.parametrize("name", SUITE)
def test_plain_call_prunes_saves_and_reloads(name, tmp_path):
    model, x = build(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruned = torchslim.prune.structured(model, x, ratio=0.5, target="macs")
    dropped = [str(w.message) for w in caught if "left unpruned" in str(w.message)]
    assert not dropped, dropped
    assert _flops(pruned, x) <= 0.575 * _flops(model, x)
    ref, out = _outs(model, x), _outs(pruned, x)
    assert [o.shape for o in out] == [r.shape for r in ref]
    assert all(torch.isfinite(o).all() for o in out)
    path = torchslim.save(pruned, tmp_path / "m.safetensors")
    back = torchslim.load(path)
    for a, b in zip(_outs(back, x), out):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
