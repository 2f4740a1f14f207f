"""One adapter per layer type, filled and read by graph, artifact, analysis
and codec; a custom layer registered once is known to all four."""
from __future__ import annotations

import torch
import torch.nn as nn

import torchslim
from torchslim.analysis.counters import Work, module_counter, register_module_counter
from torchslim.artifact.specs import register_module_spec, spec_of
from torchslim.core.layers import adapter_of, exact, field_for
from torchslim.graph.surgery import register_surgery, slice_tensors, surgery_for


def test_builtin_layers_have_every_part_in_one_record():
    import torchslim.analysis.counters  # noqa: F401  (registers the MAC rules)
    import torchslim.graph.surgery  # noqa: F401

    a = exact(nn.Linear)
    assert a.slice is not None and a.to_spec is not None and a.build is not None
    assert a.macs is not None and a.widths == ("out_features", "in_features")
    assert exact(nn.Conv2d).widths == ("out_channels", "in_channels")


class Scale(nn.Module):
    def __init__(self, n: int = 4):
        super().__init__()
        self.s = nn.Parameter(torch.ones(n))

    def forward(self, x):
        return x * self.s


class SubScale(Scale):
    pass


def test_a_custom_layer_registered_once_is_known_everywhere(tmp_path):
    def macs(m, args, kwargs, out):
        return Work(macs=out.numel(), flops=out.numel(), kinds={"scale": out.numel()})

    register_surgery(Scale, slice_tensors)
    register_module_spec(Scale, lambda m: {"n": m.s.numel()}, lambda s: Scale(s["n"]))
    register_module_counter(Scale, macs)
    assert surgery_for(Scale()) is slice_tensors and module_counter(Scale()) is macs
    assert spec_of(Scale(3))["n"] == 3
    # a subclass inherits slicing and counting through the MRO, but records its own spec only if registered
    assert surgery_for(SubScale()) is slice_tensors and field_for(SubScale, "macs") is macs
    assert spec_of(SubScale()) is None and [a.cls for a in adapter_of(SubScale)] == [Scale]
    assert torchslim.profile(nn.Sequential(Scale(4)), (torch.rand(2, 4),)).macs == 8
