"""Channel dependency groups.

Every layer that *creates* channels (a convolution's filters, a Linear's
output neurons, an attention block's heads) opens a channel *space*. The
traced graph is walked in order and each tensor is annotated with the axis
that carries channels and the spaces laid out along it (concatenation puts
several side by side; flatten repeats each channel over the spatial
positions). Ops that combine tensors (residual additions, multiplications)
unite their spaces; layers that read channels (the next convolution, a
BatchNorm, a flatten-into-Linear, a parameter added to the stream) register
the tensor axis they must slice. A *group* is one united space: pruning
channel ``c`` of the group slices every registered tensor axis at the
positions of ``c``.

What the walk cannot follow (an op with no rule that receives tracked
channels) raises a ModelError naming the module and op, or, with
``best_effort``, *freezes* the spaces it touches: frozen channels are never
removed, so the op sees exactly the tensor it saw before. Channels that reach
the model output are frozen too (the output shape never changes).

A LayerNorm over a pruned channel axis is sliced with it: structurally
valid, but it then normalises over fewer channels, so even dead channels
change the other outputs slightly (BatchNorm has no such effect).

Rules are tables: ``register_rule(LayerType, fn)`` for modules (kept whole
while tracing) and ``register_function_rule(fn_or_method_name, fn)`` for
functions and tensor methods; add a rule for a custom layer there.
"""
from __future__ import annotations

import dataclasses
import operator
import warnings
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import ModelError

__all__ = ["Member", "Group", "DependencyGraph", "build_dependency_graph", "register_rule",
           "register_function_rule", "Seg", "Annot", "Site"]


# ------------------------------------------------------------------ data model
@dataclasses.dataclass(frozen=True)
class Member:
    """One tensor axis that a group slices: channel ``c`` of the group covers
    positions ``offset + c * repeat + j`` (j < repeat) of ``module.tensor`` on ``axis``.
    role: "out" (produces the channels), "in" (reads them), "norm" (per-channel
    affine or statistics), "dw" (depthwise: reads and produces the same channel)."""
    module: str
    tensor: str
    axis: int
    offset: int
    repeat: int
    role: str


@dataclasses.dataclass
class Group:
    id: int
    size: int
    kind: str  # "channels" | "neurons" | "heads" | "units"
    members: list[Member]
    frozen: list[str]  # reasons the group must stay whole (empty: prunable)
    observe: list[tuple[str, int, int, int]]  # (consumer module, input dim, offset, repeat)
    root: int = -1  # the channel space of the graph this group is (for size sites)
    exact: bool = True  # False: a norm over the channel axis (LayerNorm) sees fewer channels after pruning

    @property
    def prunable(self) -> bool:
        return not self.frozen and self.size > 1

    @property
    def producers(self) -> list[str]:
        return sorted({m.module for m in self.members if m.role in ("out",)})

    @property
    def name(self) -> str:
        p = self.producers
        if self.kind == "heads" and p:
            return f"{p[0].rpartition('.')[0].removesuffix('.self')} heads"
        return p[0] if len(p) == 1 else (f"{p[0]} (+{len(p) - 1} coupled)" if p else f"group{self.id}")

    def indices(self, member: Member, channels: torch.Tensor) -> torch.Tensor:
        """Positions of ``channels`` on the member's axis."""
        j = torch.arange(member.repeat)
        return (member.offset + channels[:, None] * member.repeat + j[None, :]).reshape(-1)


@dataclasses.dataclass
class _Space:
    id: int
    size: int
    kind: str
    parent: int
    frozen: list[str]
    parts: list[int] | None = None  # refined into consecutive sub-spaces (a fused QKV split in three)
    part_sizes: list[int] | None = None
    exact: bool = True


@dataclasses.dataclass
class Site:
    """A size constant the traced code used on a tracked axis (``view(..., 12,
    64)``, ``split(768)``): the model read it from a module attribute, which
    must follow the pruned width. ``segs`` lay out the axis; ``module`` is the
    innermost module whose code ran the op."""
    node: str
    op: str
    module: str
    value: int
    segs: list["Seg"]


@dataclasses.dataclass
class Seg:
    space: int | None  # None: channels no group controls (fixed)
    count: int  # channels
    repeat: int = 1

    @property
    def entries(self) -> int:
        return self.count * self.repeat


@dataclasses.dataclass
class Annot:
    """Which axis of a tensor carries tracked channels and how they are laid
    out; ``outer`` copies of that layout follow each other along the axis
    when a reshape merged the channels with an outer axis (the ATen walk)."""
    dim: int
    segs: list[Seg]
    outer: int = 1

    def spaces(self) -> list[int]:
        return [s.space for s in self.segs if s.space is not None]


# ------------------------------------------------------------------ the graph
class DependencyGraph:
    def __init__(self, model: nn.Module, *, best_effort: bool = False, method: str = "fx"):
        self.model = model
        self.best_effort = best_effort
        self.method = method  # "export" (aten graph), "fx" (traced graph) or "patterns" (module-pattern rules)
        self._spaces: list[_Space] = []
        self._members: list[tuple[int, Member]] = []
        self._observe: list[tuple[int, tuple[str, int, int, int]]] = []
        self.sites: list[Site] = []
        self.warnings: list[str] = []
        self.notes: list[str] = []

    # --- layouts that change after the fact (aten walk): a space can be
    # coarsened (its channels grouped in blocks: head_dim rows make a head) or
    # refined (split into consecutive parts: a fused QKV projection)
    def size(self, sid: int) -> int:
        return self._spaces[self.find(sid)].size

    def resolve(self, sid: int | None, entries: int) -> list["Seg"]:
        """The current segments of an axis stretch that ``sid`` laid out over
        ``entries`` positions when it was recorded."""
        if sid is None:
            return [Seg(None, entries, 1)]
        r = self.find(sid)
        sp = self._spaces[r]
        if sp.parts:
            rep = entries // sum(sp.part_sizes)
            return [s for p, n in zip(sp.parts, sp.part_sizes) for s in self.resolve(p, n * rep)]
        return [Seg(r, sp.size, entries // sp.size)]

    def current(self, segs: list["Seg"]) -> list["Seg"]:
        return [x for s in segs for x in self.resolve(s.space, s.count * s.repeat)]

    def _rewrite(self, root: int, fn) -> None:
        """Replace every member/observe entry of ``root`` by ``fn(sid, entry) -> [(sid, entry)]``."""
        self._members = [y for sid, m in self._members
                         for y in (fn(sid, m) if self.find(sid) == root else [(sid, m)])]
        self._observe = [y for sid, o in self._observe
                         for y in (fn(sid, o) if self.find(sid) == root else [(sid, o)])]

    def coarsen(self, sid: int, factor: int, kind: str | None = None) -> int:
        """Group the channels of ``sid``'s space in consecutive blocks of
        ``factor``: they can then only be removed together."""
        r = self.find(sid)
        sp = self._spaces[r]
        if factor == 1:
            return r
        if sp.parts or sp.size % factor:
            raise ValueError(f"cannot coarsen a space of {sp.size} channels by {factor}")
        sp.size //= factor
        if kind:
            sp.kind = kind

        def scale(s, e):
            if isinstance(e, Member):
                return [(s, dataclasses.replace(e, repeat=e.repeat * factor))]
            return [(s, (e[0], e[1], e[2], e[3] * factor))]
        self._rewrite(r, scale)
        return r

    def refine(self, sid: int, sizes: list[int]) -> list[int]:
        """Split ``sid``'s space into consecutive parts of ``sizes`` channels."""
        r = self.find(sid)
        sp = self._spaces[r]
        if sum(sizes) != sp.size or sp.parts:
            raise ValueError(f"cannot split a space of {sp.size} channels into {sizes}")
        parts, starts, acc = [], [], 0
        for n in sizes:
            p = self.new_space(n, sp.kind)
            self._spaces[p].frozen = list(sp.frozen)
            self._spaces[p].exact = sp.exact
            parts.append(p)
            starts.append(acc)
            acc += n

        def split(s, e):
            if isinstance(e, Member):
                return [(p, dataclasses.replace(e, offset=e.offset + st * e.repeat)) for p, st in zip(parts, starts)]
            return [(p, (e[0], e[1], e[2] + st * e[3], e[3])) for p, st in zip(parts, starts)]
        self._rewrite(r, split)
        sp.parts, sp.part_sizes = parts, list(sizes)
        return parts

    def inexact(self, sid: int) -> None:
        self._spaces[self.find(sid)].exact = False

    # --- spaces
    def new_space(self, size: int, kind: str) -> int:
        sid = len(self._spaces)
        self._spaces.append(_Space(sid, int(size), kind, sid, []))
        return sid

    def find(self, sid: int) -> int:
        while self._spaces[sid].parent != sid:
            self._spaces[sid].parent = self._spaces[self._spaces[sid].parent].parent
            sid = self._spaces[sid].parent
        return sid

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        sa, sb = self._spaces[ra], self._spaces[rb]
        if sa.size != sb.size:  # cannot happen for a model that runs; be safe anyway
            self.freeze(ra, "coupled with a channel space of another size")
            self.freeze(rb, "coupled with a channel space of another size")
            return ra
        sb.parent = ra
        sa.frozen += [f for f in sb.frozen if f not in sa.frozen]
        sa.exact = sa.exact and sb.exact
        if sa.kind != sb.kind and "heads" in (sa.kind, sb.kind):
            sa.kind = "heads"
        return ra

    def freeze(self, sid: int, reason: str) -> None:
        r = self._spaces[self.find(sid)]
        if r.parts:
            for p in r.parts:
                self.freeze(p, reason)
            return
        if reason not in r.frozen:
            r.frozen.append(reason)

    def member(self, sid: int, module: str, tensor: str, axis: int, offset: int, repeat: int, role: str) -> None:
        self._members.append((sid, Member(module, tensor, axis, offset, repeat, role)))

    def observe(self, sid: int, module: str, dim: int, offset: int, repeat: int) -> None:
        self._observe.append((sid, (module, dim, offset, repeat)))

    # --- helpers for rules
    def consume(self, annot: Annot | None, module: str, tensors: list[tuple[str, int]], role: str = "in",
                observe_dim: int | None = None) -> None:
        """Register ``module``'s tensor axes as readers of ``annot``'s channels."""
        if annot is None:
            return
        off = 0
        for seg in annot.segs:
            if seg.space is not None:
                for tname, axis in tensors:
                    self.member(seg.space, module, tname, axis, off, seg.repeat, role)
                if observe_dim is not None:
                    self.observe(seg.space, module, observe_dim, off, seg.repeat)
            off += seg.entries

    def produce(self, module: str, size: int, kind: str, tensors: list[tuple[str, int]], repeat: int = 1) -> int:
        sid = self.new_space(size, kind)
        for tname, axis in tensors:
            self.member(sid, module, tname, axis, 0, repeat, "out")
        return sid

    def unhandled(self, where: str, op: str, why: str, annots: list[Annot | None]) -> None:
        msg = f"structured pruning cannot follow channels through {op} at {where!r}: {why}"
        if not self.best_effort:
            raise ModelError(
                msg + ". Exclude the layer that produces these channels (Scope exclude_names), register a rule "
                "for it (torchslim.graph.register_rule / register_function_rule), or pass best_effort=True to "
                "leave the affected channel groups unpruned")
        self.warnings.append(msg + "; the affected channel groups are left unpruned")
        for a in annots:
            if a is not None:
                for s in a.spaces():
                    self.freeze(s, f"{op} at {where} is not supported")

    # --- results
    def groups(self) -> list[Group]:
        by_root: dict[int, Group] = {}
        for sid, sp in enumerate(self._spaces):
            r = self.find(sid)
            if r not in by_root and not self._spaces[r].parts:
                root = self._spaces[r]
                by_root[r] = Group(r, root.size, root.kind, [], list(root.frozen), [], root=r, exact=root.exact)
        for sid, m in self._members:
            if self.find(sid) in by_root:
                by_root[self.find(sid)].members.append(m)
        for sid, o in self._observe:
            if self.find(sid) in by_root:
                by_root[self.find(sid)].observe.append(o)
        out = [g for g in by_root.values() if any(m.role == "out" for m in g.members)]
        for i, g in enumerate(sorted(out, key=lambda g: g.id)):
            g.id = i
        return sorted(out, key=lambda g: g.id)

    def root_of(self, sid: int) -> int:
        return self.find(sid)


# ------------------------------------------------------------------ rule tables
ModuleRule = Callable[[DependencyGraph, str, nn.Module, "Annot | None", tuple], "Annot | None"]
FunctionRule = Callable[[DependencyGraph, fx.Node, list, dict, tuple], "Annot | None"]
_MODULE_RULES: dict[type, ModuleRule] = {}
_FUNCTION_RULES: dict[Any, FunctionRule] = {}


def register_rule(cls: type, rule: ModuleRule) -> None:
    """``rule(graph, name, module, input_annot, input_shape) -> output annot``.
    Modules of ``cls`` are kept whole when tracing."""
    _MODULE_RULES[cls] = rule


def register_function_rule(target: Any, rule: FunctionRule) -> None:
    """``rule(graph, node, args, kwargs, shapes) -> output annot``; ``target`` is
    a function (``torch.flatten``) or a tensor method name (``"flatten"``).
    ``args``/``kwargs`` have each Node replaced by its Annot (or None)."""
    _FUNCTION_RULES[target] = rule


def _module_rule(m: nn.Module) -> ModuleRule | None:
    for klass in type(m).__mro__:
        if klass in _MODULE_RULES:
            return _MODULE_RULES[klass]
    return None


def leaf_types() -> tuple[type, ...]:
    return tuple(_MODULE_RULES)


# ------------------------------------------------------------------ module rules
def _passthrough(g, name, m, a, shape):
    return a


def _conv(g: DependencyGraph, name: str, m: nn.Conv2d, a: Annot | None, shape) -> Annot | None:
    if a is not None and a.dim != 1:
        g.unhandled(name, type(m).__name__, "channels arrive on another axis than 1", [a])
        a = None
    depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
    if depthwise:
        if a is None:
            return None
        g.consume(a, name, [("weight", 0)] + ([("bias", 0)] if m.bias is not None else []), role="dw")
        return a
    if m.groups > 1:
        if a is not None:
            for s in a.spaces():
                g.freeze(s, f"grouped convolution {name} (groups={m.groups})")
        sid = g.new_space(m.out_channels, "channels")
        g.freeze(sid, f"grouped convolution {name} (groups={m.groups})")
        return Annot(1, [Seg(sid, m.out_channels)])
    g.consume(a, name, [("weight", 1)], observe_dim=1)
    sid = g.produce(name, m.out_channels, "channels", [("weight", 0)] + ([("bias", 0)] if m.bias is not None else []))
    return Annot(1, [Seg(sid, m.out_channels)])


def _linear(g: DependencyGraph, name: str, m: nn.Linear, a: Annot | None, shape) -> Annot | None:
    rank = len(shape)
    out_t = [("weight", 0)] + ([("bias", 0)] if m.bias is not None else [])
    if a is not None and a.dim != rank - 1:
        sid = g.new_space(m.out_features, "neurons")
        g.freeze(sid, f"{name} maps the last axis while channels are tracked on axis {a.dim}")
        return a
    g.consume(a, name, [("weight", 1)], observe_dim=rank - 1)
    sid = g.produce(name, m.out_features, "neurons", out_t)
    return Annot(rank - 1, [Seg(sid, m.out_features)])


def _batchnorm(g, name, m, a, shape):
    if a is None:
        return None
    if a.dim != 1:
        g.unhandled(name, type(m).__name__, "channels arrive on another axis than 1", [a])
        return None
    ts = [(t, 0) for t in ("weight", "bias", "running_mean", "running_var") if getattr(m, t, None) is not None]
    if not ts:  # nothing to slice would leave num_features stale
        for s in a.spaces():
            g.freeze(s, f"{type(m).__name__} {name} has neither affine parameters nor running statistics")
        return a
    g.consume(a, name, ts, role="norm")
    return a


def _layernorm(g, name, m: nn.LayerNorm, a, shape):
    if a is None:
        return None
    rank = len(shape)
    nd = len(m.normalized_shape)
    if a.dim < rank - nd:
        return a  # channels are not normalised over
    if nd != 1:
        g.unhandled(name, "LayerNorm", "normalises over several axes including the channel axis", [a])
        return None
    ts = [(t, 0) for t in ("weight", "bias") if getattr(m, t, None) is not None]
    if not ts:  # nothing to slice would leave normalized_shape stale
        for s in a.spaces():
            g.freeze(s, f"LayerNorm {name} has no affine parameters")
        return a
    g.consume(a, name, ts, role="norm")
    return a


def _pool(g, name, m, a, shape):
    if a is None:
        return None
    nd = 1 if isinstance(m, (nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)) else 2
    if a.dim >= len(shape) - nd:
        g.unhandled(name, type(m).__name__, "pools over the channel axis", [a])
        return None
    return a


def _flatten_module(g, name, m: nn.Flatten, a, shape):
    return _flatten(g, name, a, shape, m.start_dim, m.end_dim)


def _self_attention(g: DependencyGraph, name: str, m, a: Annot | None, shape) -> Annot | None:
    """zoo SelfAttention: heads are rows of q/k/v (head_dim each) and columns of proj."""
    rank = len(shape)
    if a is not None and a.dim != rank - 1:
        g.unhandled(name, type(m).__name__, "channels arrive on another axis than the last", [a])
        a = None
    p = f"{name}." if name else ""
    hd = m.head_dim
    g.consume(a, p + "q", [("weight", 1)])
    g.consume(a, p + "k", [("weight", 1)])
    g.consume(a, p + "v", [("weight", 1)])
    heads = g.new_space(m.num_heads, "heads")
    for lin in ("q", "k", "v"):
        g.member(heads, p + lin, "weight", 0, 0, hd, "out")
        if getattr(m, lin).bias is not None:
            g.member(heads, p + lin, "bias", 0, 0, hd, "out")
    g.member(heads, p + "proj", "weight", 1, 0, hd, "in")
    g.observe(heads, p + "proj", -1, 0, hd)
    out = g.produce(p + "proj", m.proj.out_features, "neurons",
                    [("weight", 0)] + ([("bias", 0)] if m.proj.bias is not None else []))
    return Annot(rank - 1, [Seg(out, m.proj.out_features)])


for _cls in (nn.Conv1d, nn.Conv2d):
    register_rule(_cls, _conv)
register_rule(nn.Linear, _linear)
for _cls in (nn.BatchNorm1d, nn.BatchNorm2d):
    register_rule(_cls, _batchnorm)
register_rule(nn.LayerNorm, _layernorm)
for _cls in (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU,
             nn.ELU, nn.Hardtanh, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.Mish):
    register_rule(_cls, _passthrough)
for _cls in (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
             nn.AdaptiveMaxPool2d):
    register_rule(_cls, _pool)
register_rule(nn.Flatten, _flatten_module)


def _zoo_rules() -> None:
    from ..zoo.models import SelfAttention

    register_rule(SelfAttention, _self_attention)


_zoo_rules()


# ------------------------------------------------------------------ function rules
def _norm_dim(d: int, rank: int) -> int:
    return d + rank if d < 0 else d


def _flatten(g, where, a: Annot | None, shape, start: int, end: int) -> Annot | None:
    if a is None:
        return None
    rank = len(shape)
    start, end = _norm_dim(start, rank), _norm_dim(end, rank)
    if a.dim < start:
        return a
    if a.dim > end:
        return Annot(a.dim - (end - start), a.segs)
    if a.dim != start:
        g.unhandled(where, "flatten", "the channel axis is not the first flattened axis", [a])
        return None
    inner = 1
    for s in shape[start + 1:end + 1]:
        inner *= int(s)
    return Annot(start, [Seg(s.space, s.count, s.repeat * inner) for s in a.segs])


def _unify(g: DependencyGraph, where: str, op: str, annots: list[Annot]) -> Annot:
    """Elementwise combination of several tracked tensors: their layouts must
    agree; matching spaces are united."""
    first = annots[0]
    for other in annots[1:]:
        same = (other.dim == first.dim and len(other.segs) == len(first.segs)
                and all(x.count == y.count and x.repeat == y.repeat for x, y in zip(first.segs, other.segs)))
        if not same:
            for a in (first, other):
                for s in a.spaces():
                    g.freeze(s, f"{op} at {where} combines differently laid-out channels")
            continue
        for x, y in zip(first.segs, other.segs):
            if x.space is not None and y.space is not None:
                g.union(x.space, y.space)
            elif x.space is not None or y.space is not None:
                g.freeze(x.space if x.space is not None else y.space, f"{op} at {where} combines with fixed channels")
    return first


def _shape(node) -> tuple | None:
    tm = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(tm.shape) if tm is not None and hasattr(tm, "shape") else None


def _elementwise(g: DependencyGraph, node: fx.Node, args, kwargs, shapes) -> Annot | None:
    out_shape = _shape(node)
    rank = len(out_shape)
    tracked: list[Annot] = []
    for raw, a in zip(node.args, args):
        if isinstance(a, Annot):
            in_rank = len(_shape(raw))
            tracked.append(Annot(a.dim + rank - in_rank, a.segs))
    if not tracked:
        return None
    res = _unify(g, node.name, str(node.target), tracked) if len(tracked) > 1 else tracked[0]
    for raw, a in zip(node.args, args):
        if a is not None or not isinstance(raw, fx.Node):
            continue
        s = _shape(raw)
        if s is None:
            continue
        d = res.dim - (rank - len(s))
        if d < 0 or s[d] == 1:
            continue  # broadcast along the channel axis
        if raw.op == "get_attr":
            owner, _, attr = raw.target.rpartition(".")
            if not _resizable(g.model, owner):
                for sid in res.spaces():
                    g.freeze(sid, f"bare parameter {raw.target!r}: a saved artifact could not rebuild its new shape")
                continue
            g.consume(res, owner, [(attr, d)], role="norm")
        else:
            g.unhandled(node.name, str(getattr(node.target, "__name__", node.target)),
                        f"combines tracked channels with the untracked tensor {raw.name}", tracked)
            return None
    return res


def _resizable(model: nn.Module, owner: str) -> bool:
    """A parameter read directly by a forward can be sliced only if the
    artifact records its owner's structure (a registered module spec with a
    build or patch), so ``torchslim.load`` rebuilds the new shape."""
    from ..artifact.specs import rebuildable

    return bool(owner) and rebuildable(model.get_submodule(owner))


def _first(g, node, args, kwargs, shapes):
    return args[0] if args and isinstance(args[0], Annot) else None


def _cat(g: DependencyGraph, node: fx.Node, args, kwargs, shapes) -> Annot | None:
    raws = node.args[0]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    rank = len(_shape(node))
    dim = _norm_dim(dim, rank)
    annots = args[0]
    if all(a is None for a in annots):
        return None
    tracked = [a for a in annots if a is not None]
    if any(a.dim != dim for a in tracked):
        if all(a.dim == tracked[0].dim for a in tracked) and len(tracked) == len(annots):
            return _unify(g, node.name, "cat", tracked)
        g.unhandled(node.name, "cat", "concatenates along another axis than the channels", tracked)
        return None
    segs: list[Seg] = []
    for raw, a in zip(raws, annots):
        if a is None:
            segs.append(Seg(None, int(_shape(raw)[dim])))
        else:
            segs.extend(a.segs)
    return Annot(dim, segs)


def _flatten_fn(g, node, args, kwargs, shapes):
    a = args[0]
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    return _flatten(g, node.name, a, _shape(node.args[0]), start, end)


def _transpose(g, node, args, kwargs, shapes):
    a = args[0]
    if a is None:
        return None
    rank = len(_shape(node.args[0]))
    d0, d1 = (_norm_dim(int(d), rank) for d in node.args[1:3])
    dim = d1 if a.dim == d0 else d0 if a.dim == d1 else a.dim
    return Annot(dim, a.segs)


def _permute(g, node, args, kwargs, shapes):
    a = args[0]
    if a is None:
        return None
    dims = node.args[1] if len(node.args) == 2 and isinstance(node.args[1], (list, tuple)) else node.args[1:]
    rank = len(dims)
    dims = [_norm_dim(int(d), rank) for d in dims]
    return Annot(dims.index(a.dim), a.segs)


def _reduce(g, node, args, kwargs, shapes):
    a = args[0]
    if a is None:
        return None
    rank = len(_shape(node.args[0]))
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    if dim is None:
        g.unhandled(node.name, str(node.target), "reduces over all axes, including the channels", [a])
        return None
    dims = [_norm_dim(int(d), rank) for d in (dim if isinstance(dim, (list, tuple)) else [dim])]
    if a.dim in dims:
        g.unhandled(node.name, str(node.target), "reduces over the channel axis", [a])
        return None
    return Annot(a.dim if keep else a.dim - sum(d < a.dim for d in dims), a.segs)


def _pool_fn(g, node, args, kwargs, shapes):
    a = args[0]
    if a is None:
        return None
    if a.dim >= len(_shape(node.args[0])) - 2:
        g.unhandled(node.name, str(node.target), "pools over the channel axis", [a])
        return None
    return a


def _reshape(g, node, args, kwargs, shapes):
    a = args[0]
    if a is None:
        return None
    src, dst = _shape(node.args[0]), _shape(node)
    c = a.dim
    pre = 1
    for s in src[:c]:
        pre *= int(s)
    acc, d = 1, 0
    while d < len(dst) and acc < pre:
        acc *= int(dst[d])
        d += 1
    if acc == pre and d < len(dst):
        if int(dst[d]) == int(src[c]):
            return Annot(d, a.segs)
        inner = 1
        e = c
        while e + 1 < len(src) and int(src[c]) * inner < int(dst[d]):
            e += 1
            inner *= int(src[e])
        if int(src[c]) * inner == int(dst[d]):
            return Annot(d, [Seg(s.space, s.count, s.repeat * inner) for s in a.segs])
    g.unhandled(node.name, str(node.target), f"reshapes {list(src)} to {list(dst)}, splitting the channel axis", [a])
    return None


for _t in (F.relu, torch.relu, F.relu6, F.gelu, F.silu, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.dropout,
           F.hardtanh, F.leaky_relu, F.hardswish, F.elu, torch.abs, operator.neg, "relu", "relu_", "sigmoid", "tanh",
           "contiguous", "clone", "float", "abs", "detach", "gelu"):
    register_function_rule(_t, _first)
for _t in (operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.imul, torch.add,
           torch.sub, torch.mul, torch.div, "add", "sub", "mul", "div", "add_", "mul_"):
    register_function_rule(_t, _elementwise)
for _t in (torch.cat, torch.concat):
    register_function_rule(_t, _cat)
for _t in (torch.flatten, "flatten"):
    register_function_rule(_t, _flatten_fn)
for _t in (torch.transpose, "transpose"):
    register_function_rule(_t, _transpose)
for _t in (torch.permute, "permute"):
    register_function_rule(_t, _permute)
for _t in (torch.mean, torch.sum, torch.amax, "mean", "sum", "amax"):
    register_function_rule(_t, _reduce)
for _t in (F.adaptive_avg_pool2d, F.max_pool2d, F.avg_pool2d, F.adaptive_max_pool2d):
    register_function_rule(_t, _pool_fn)
for _t in (torch.reshape, "reshape", "view"):
    register_function_rule(_t, _reshape)


# ------------------------------------------------------------------ the walk
def _map(x, env):
    if isinstance(x, fx.Node):
        return env.get(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_map(v, env) for v in x)
    if isinstance(x, dict):
        return {k: _map(v, env) for k, v in x.items()}
    return x


def _collect(x) -> list[Annot]:
    if isinstance(x, Annot):
        return [x]
    if isinstance(x, (list, tuple)):
        return [a for v in x for a in _collect(v)]
    if isinstance(x, dict):
        return [a for v in x.values() for a in _collect(v)]
    return []


def _trace_graph(model: nn.Module, example_inputs: tuple, g: DependencyGraph) -> None:
    from .trace import trace

    gm = trace(model, example_inputs, leaf_types())
    env: dict[fx.Node, Annot | None] = {}
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "get_attr"):
            env[node] = None
            continue
        args, kwargs = _map(node.args, env), _map(node.kwargs, env)
        tracked = _collect(args) + _collect(kwargs)
        if node.op == "output":
            for a in tracked:
                for s in a.spaces():
                    g.freeze(s, "reaches the model output")
            continue
        if node.op == "call_module":
            m = model.get_submodule(node.target)
            rule = _module_rule(m)
            if rule is None:
                if tracked:
                    g.unhandled(node.target, type(m).__name__, "no dependency rule for this layer type", tracked)
                env[node] = None
                continue
            extra = _collect(args[1:]) + _collect(kwargs)
            if extra:
                g.unhandled(node.target, type(m).__name__, "tracked channels arrive in a second argument", extra)
            env[node] = rule(g, node.target, m, args[0] if args else None, _shape(node.args[0]) or ())
            continue
        # call_function / call_method
        if not tracked:
            env[node] = None
            continue
        if "tensor_meta" not in node.meta:
            env[node] = None  # x.shape, x.size(1), ...: no tensor flows on
            continue
        rule = _FUNCTION_RULES.get(node.target)
        if rule is None:
            name = getattr(node.target, "__name__", str(node.target))
            g.unhandled(node.name, f"{name}()", "no dependency rule for this op", tracked)
            env[node] = None
            continue
        if not isinstance(node.meta["tensor_meta"], torch.fx.passes.shape_prop.TensorMetadata):
            g.unhandled(node.name, str(node.target), "returns several tensors", tracked)
            env[node] = None
            continue
        env[node] = rule(g, node, list(args), kwargs, None)


_BUILTIN_RULES = frozenset(_MODULE_RULES)


def _user_rules(model: nn.Module) -> list[str]:
    """Layer types in ``model`` with a rule registered by the user (those
    are honoured by the fx walk, which keeps such layers whole)."""
    return sorted({type(m).__name__ for m in model.modules()
                   if _module_rule(m) is not None and not any(k in _BUILTIN_RULES for k in type(m).__mro__)})


def build_dependency_graph(model: nn.Module, example_inputs: tuple, *, best_effort: bool = False,
                           method: str = "auto") -> DependencyGraph:
    """The channel groups of ``model``.

    ``method="auto"`` runs the model with ``torch.export`` (non-strict: its
    Python runs on the example inputs) and walks the ATen ops it executed
    (``graph.aten``); that follows Hugging Face models, ``*args`` signatures,
    computed view sizes and tuple outputs. A model that holds layers with a
    user-registered rule (``register_rule``), or that torch.export cannot run,
    is walked on its torch.fx graph; when torch.fx cannot trace it either,
    the module-pattern rules of ``torchslim.graph.patterns`` are used: they
    know whole transformer blocks (attention heads, MLP hidden units) and
    leave everything else unpruned. ``graph.method`` says which path was taken
    (``"export"``, ``"fx"``, ``"patterns"``)."""
    from .patterns import pattern_groups
    from .trace import TraceError

    example_inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if method not in ("auto", "export", "fx"):
        raise ValueError(f"method must be 'auto', 'export' or 'fx', got {method!r}")
    export_error = None
    if method == "export" or (method == "auto" and not _user_rules(model)):
        from .aten import walk_exported
        from .export import export_graph

        try:
            eg = export_graph(model, example_inputs)
        except TraceError as e:
            if method == "export":
                raise
            export_error = e
        else:
            g = DependencyGraph(model, best_effort=best_effort, method="export")
            walk_exported(g, eg)
            return g
    g = DependencyGraph(model, best_effort=best_effort)
    try:
        _trace_graph(model, example_inputs, g)
    except TraceError as e:
        g = DependencyGraph(model, best_effort=best_effort, method="patterns")
        if not pattern_groups(model, g):
            raise ModelError(
                f"{e}; and no module-pattern rule matches its blocks. Make the model traceable "
                "(torch.fx.symbolic_trace) or register a pattern with torchslim.graph.register_pattern") from None
        why = f"{export_error}; " if export_error is not None else ""
        g.notes.append(f"{why}torch.fx could not trace the model ({str(e)[:120]}); used module-pattern rules: "
                       "attention heads and MLP hidden units of transformer blocks only")
        warnings.warn(g.notes[-1], stacklevel=2)
    return g
