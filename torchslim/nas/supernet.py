"""The elastic supernet (once-for-all style) of a trained model.

``ElasticSupernet(model)`` copies ``model`` and replaces the layers its plan
(``plan.py``) names with elastic ones (``layers.py``): elastic width (every
channel group keeps its leading channels; the channels are sorted by
importance once, here, so "leading" means "most important"), elastic depth
(the last blocks of a stage may be skipped) and elastic kernel sizes for
depthwise convolutions. Its largest config is the source model: the same
weights, the same function (bit for bit with ``sort_channels=False``; with
sorting, to float rounding, as the channel order changes the order of sums).

``set_config`` / ``using`` select a subnet; ``extract(config)`` returns it as a
plain model of the source's class built from standard layers with their own
copy of the weights, which ``torchslim.save`` / ``torchslim.load`` round-trip
(the narrower layers are recorded by spec) and ONNX export handles.
"""
from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn as nn

from ..artifact.specs import set_submodule
from ..core.errors import ConfigError, ModelError
from .layers import ChannelGroup, DynamicBatchNorm2d, DynamicConv2d, DynamicLinear, ElasticBlock
from .plan import ElasticPlan, elastic_plan
from .space import Dim, SearchSpace

__all__ = ["ElasticSupernet", "width_choices", "DEFAULT_WIDTH_MULTS", "DEFAULT_INNER_MULTS"]

DEFAULT_WIDTH_MULTS = (0.5, 0.75, 1.0)  # stage widths (residual streams)
DEFAULT_INNER_MULTS = (0.25, 0.5, 0.75, 1.0)  # block-internal widths (ResNet middle, MobileNetV2 expansion)


def width_choices(size: int, mults, round_to: int = 1) -> tuple[int, ...]:
    """Channel counts for multipliers ``mults`` of ``size`` (rounded to a
    multiple of ``round_to`` where the size allows; ``size`` itself always)."""
    out = {int(size)}
    for m in mults:
        c = size * float(m)
        c = int(round(c / round_to)) * round_to if round_to > 1 and size > round_to else int(round(c))
        out.add(min(size, max(c, min(round_to, size), 1)))
    return tuple(sorted(out))


def _check_mults(name: str, mults) -> tuple[float, ...]:
    mults = tuple(float(m) for m in mults)
    if not mults or any(not 0 < m <= 1 for m in mults):
        raise ConfigError(f"{name} must list multipliers in (0, 1], got {list(mults)}")
    return mults


class ElasticSupernet(nn.Module):
    """Once-for-all supernet of ``model`` (not changed; its weights are copied).

    width_mults: stage-width multipliers (channels of each residual stream).
    inner_mults: multipliers of the widths inside a block (a ResNet block's
      middle, a MobileNetV2 expansion: 0.25 of an expansion of 4 is 1).
    kernel_sizes: kernel sizes of depthwise convolutions (odd); None keeps each
      trained kernel k and adds every smaller odd size down to k - 2 (3 -> 1, 3).
      A size above the trained one grows the kernel with a zero border (the
      same function), e.g. (3, 5, 7) as in once-for-all.
    elastic_depth: let the search skip the last blocks of a stage.
    round_to: keep channel counts multiples of this where the size allows.
    sort_channels: sort every elastic group's channels by importance first.
    """

    def __init__(self, model: nn.Module, *, width_mults=DEFAULT_WIDTH_MULTS, inner_mults=DEFAULT_INNER_MULTS,
                 kernel_sizes: tuple[int, ...] | None = None, elastic_depth: bool = True, round_to: int = 1,
                 sort_channels: bool = True):
        super().__init__()
        width_mults = _check_mults("width_mults", width_mults)
        inner_mults = _check_mults("inner_mults", inner_mults)
        if round_to < 1:
            raise ConfigError(f"round_to must be a positive integer, got {round_to}")
        plan = elastic_plan(model)
        self.plan: ElasticPlan = plan
        self.source_arch = getattr(model, "torchslim_arch", None)
        net = copy.deepcopy(model).eval()
        self.groups: dict[str, ChannelGroup] = {
            g.name: ChannelGroup(g.name, g.size, width_choices(g.size, inner_mults if g.inner else width_mults,
                                                               round_to) if g.elastic else None)
            for g in plan.groups}
        self.layers: dict[str, nn.Module] = {}
        self._convert(net, plan, kernel_sizes)
        self.blocks: dict[str, ElasticBlock] = {}
        dims: list[Dim] = []
        for st in plan.stages:
            if not elastic_depth or st.min_depth >= len(st.blocks):
                continue
            for b in st.blocks[st.min_depth:]:
                eb = ElasticBlock(net.get_submodule(b))
                set_submodule(net, b, eb)
                self.blocks[b] = eb
            dims.append(Dim(f"depth.{st.name}", tuple(range(st.min_depth, len(st.blocks) + 1)), stage=st.name,
                            blocks=tuple(st.blocks)))
        skippable = set(self.blocks)
        for g in plan.groups:
            grp = self.groups[g.name]
            if len(grp.choices) > 1:
                dims.append(Dim(f"width.{g.name}", grp.choices, block=g.block if g.block in skippable else None))
        for path, block in plan.kernels.items():
            conv = self.layers[path]
            if len(conv.kernel_sizes) > 1:
                dims.append(Dim(f"kernel.{path}", conv.kernel_sizes, block=block if block in skippable else None))
        self.space = SearchSpace(dims)
        self.net = net
        if sort_channels:
            self.sort_channels()
        self.config = self.space.max_config()

    @property
    def largest_is_source(self) -> bool:
        """False when kernels were grown: the largest subnet then computes the
        source's function with larger (zero-bordered) kernels, at another speed."""
        return not any(isinstance(m, DynamicConv2d) and m.grown for m in self.layers.values())

    # ------------------------------------------------------------ building
    def _convert(self, net: nn.Module, plan: ElasticPlan, kernel_sizes) -> None:
        ins: dict[str, ChannelGroup] = {}
        outs: dict[str, ChannelGroup] = {}
        norms: dict[str, ChannelGroup] = {}
        for g in plan.groups:
            grp = self.groups[g.name]
            for p in g.producers:
                outs[p] = grp
            for p in g.consumers:
                ins[p] = grp
            for p in g.depthwise:
                ins[p] = outs[p] = grp
            for p in g.norms:
                norms[p] = grp
        for path in sorted(set(ins) | set(outs)):
            m = net.get_submodule(path)
            if isinstance(m, nn.Conv2d):
                ks = None
                if path in plan.kernels:
                    k = m.kernel_size[0]
                    ks = tuple(kernel_sizes) if kernel_sizes is not None else tuple(range(max(1, k - 2), k + 1, 2))
                new = DynamicConv2d(m, in_group=ins.get(path), out_group=outs.get(path), kernel_sizes=ks, where=path)
            elif isinstance(m, nn.Linear):
                if path in outs:
                    raise ModelError(f"layer {path!r}: an elastic Linear's outputs are fixed; the plan lists it as "
                                     "a producer")
                new = DynamicLinear(m, in_group=ins.get(path))
            else:
                raise ModelError(f"layer {path!r}: {type(m).__name__} cannot be made elastic (Conv2d or Linear "
                                 "expected)")
            set_submodule(net, path, new)
            self.layers[path] = new
        for path, grp in norms.items():
            m = net.get_submodule(path)
            if not isinstance(m, nn.BatchNorm2d):
                raise ModelError(f"layer {path!r}: {type(m).__name__} is not a BatchNorm2d")
            new = DynamicBatchNorm2d(m, group=grp)
            set_submodule(net, path, new)
            self.layers[path] = new

    @torch.no_grad()
    def channel_importance(self, group: str) -> torch.Tensor:
        """Importance of a group's channels: the L1 norm of every producing
        filter and the BatchNorm gain |gamma| / sqrt(var + eps) of every norm
        over them, each layer's term scaled to mean 1, summed."""
        g = self.plan.group(group)
        terms = []
        for p in g.producers + g.depthwise:
            w = self.layers[p].weight
            terms.append(w.abs().flatten(1).sum(1))
        for p in g.norms:
            bn = self.layers[p]
            if bn.weight is not None and bn.running_var is not None:
                terms.append(bn.weight.abs() / torch.sqrt(bn.running_var + bn.eps))
        total = torch.zeros(g.size)
        for t in terms:
            total += t / t.mean().clamp_min(1e-12)
        return total

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Reorder every elastic group's channels by importance (descending) in
        every layer that touches them: the function is unchanged, and the
        leading channels a narrower subnet keeps are the important ones."""
        for g in self.plan.groups:
            if len(self.groups[g.name].choices) < 2:
                continue
            perm = torch.argsort(self.channel_importance(g.name), descending=True, stable=True)
            for p in g.producers + g.depthwise:
                conv = self.layers[p]
                conv.weight.copy_(conv.weight[perm])
                if conv.bias is not None:
                    conv.bias.copy_(conv.bias[perm])
            for p in g.norms:
                bn = self.layers[p]
                for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                    if t is not None:
                        t.copy_(t[perm])
            for p in g.consumers:
                layer = self.layers[p]
                layer.weight.copy_(layer.weight[:, perm])

    # ------------------------------------------------------------ configs
    def forward(self, *args, **kwargs):
        return self.net(*args, **kwargs)

    def max_config(self) -> dict:
        return self.space.max_config()

    def min_config(self) -> dict:
        return self.space.min_config()

    def sample(self, generator: torch.Generator | None = None) -> dict:
        """A random subnet config (every choice uniform)."""
        return self.space.sample(generator)

    def set_config(self, config: dict | None) -> dict:
        """Select a subnet (``None``: the largest); returns its canonical config."""
        config = self.space.max_config() if config is None else self.space.validate(config)
        for grp in self.groups.values():
            grp.active = grp.size
        for d in self.space.dims:
            v = config[d.name]
            kind, _, name = d.name.partition(".")
            if kind == "width":
                self.groups[name].active = v
            elif kind == "kernel":
                self.layers[name].active_kernel = v
            else:
                for i, b in enumerate(d.blocks):
                    if b in self.blocks:
                        self.blocks[b].active = i < v
        self.config = config
        return config

    @contextlib.contextmanager
    def using(self, config: dict | None):
        """Run a block of code with ``config`` selected; the previous config is restored."""
        before = self.config
        try:
            yield self.set_config(config)
        finally:
            self.set_config(before)

    @torch.no_grad()
    def extract(self, config: dict | None = None) -> nn.Module:
        """The subnet ``config`` (default: the one selected) as a plain model of
        the source's class: standard layers, own weights, eval mode. Its
        BatchNorm statistics are the supernet's shared ones; re-estimate them
        (``torchslim.prune.recalibrate_bn``) before judging it."""
        with self.using(self.config if config is None else config):
            net = copy.deepcopy(self.net)
        for name, m in list(net.named_modules()):
            if isinstance(m, (DynamicConv2d, DynamicBatchNorm2d, DynamicLinear)):
                set_submodule(net, name, m.to_plain())
        for name, m in sorted(((n, m) for n, m in net.named_modules() if isinstance(m, ElasticBlock)),
                              key=lambda nm: -nm[0].count(".")):
            set_submodule(net, name, m.block if m.active else nn.Identity())
        if self.source_arch is not None:
            net.torchslim_arch = copy.deepcopy(self.source_arch)  # how torchslim.save records the architecture
        return net.eval()
