"""Channel dependencies from an executed ATen graph (``graph.export``).

The walk is the one of ``deps.py`` (every tensor carries an ``Annot``: the
axis with tracked channels and the spaces laid out along it), over ATen ops
instead of fx modules, so it follows what any model's Python really ran.
What the ATen level adds:

* **Parameters by provenance.** A parameter is a graph input (``PRef``) that
  remembers which of its axes each tensor axis came from, through views,
  permutes, indexing and expands. A linear/conv/norm/embedding reads its
  parameters by role; a parameter-derived tensor that meets tracked channels
  elementwise (a position embedding, a layer scale, Swin's relative position
  bias table) is sliced with them.
* **Heads without patterns.** A ``view`` that splits a tracked axis into
  (heads, head_dim) *coarsens* the space: its channels become heads of
  head_dim rows. Grouped-query attention coarsens the query heads into the
  groups that share a key/value head. A ``split`` of a fused QKV projection
  *refines* its space into three parts, which then unite with each other
  head by head through the attention.
* **Size sites.** A size constant on a tracked axis (``view(b, t, 12, 64)``,
  ``split(768)``) came from a module attribute; it is recorded (``Site``) so
  pruning can update that attribute, or freeze the channels if it cannot
  find it.

An op with no rule that receives tracked channels is ``unhandled`` (an error,
or with ``best_effort`` its channels are frozen with a warning). An op the
walk understands but that mixes channels (a softmax or mean over them, a
slice of some of them) freezes them with the reason: never a wrong model.
"""
from __future__ import annotations

import dataclasses
import math
import operator
from typing import Any, Callable

import torch
import torch.fx as fx

from .deps import Annot, DependencyGraph, Seg, Site
from .export import ExportedGraph

__all__ = ["PRef", "walk_exported", "register_aten_rule", "op_name", "tensor_shape"]


@dataclasses.dataclass(frozen=True)
class PRef:
    """A tensor whose axes came from a parameter's axes (``None``: no single
    parameter axis) with no other mixing: the parameter itself, or a view,
    permute, index or expand of it."""
    module: str
    tensor: str
    axes: tuple[int | None, ...]


AtenRule = Callable[[DependencyGraph, fx.Node, list], Any]
_RULES: dict[str, AtenRule] = {}


def register_aten_rule(names: str | tuple[str, ...], rule: AtenRule) -> None:
    """``rule(graph, node, args) -> Annot | PRef | list | None`` for ATen ops
    by packet name (``"view"``, ``"linear"``); ``args`` has each input node
    replaced by its Annot/PRef (or None)."""
    for n in (names,) if isinstance(names, str) else names:
        _RULES[n] = rule


# ------------------------------------------------------------------ helpers
def _shape(n) -> tuple[int, ...] | None:
    v = n.meta.get("val") if isinstance(n, fx.Node) else None
    return tuple(int(s) for s in v.shape) if isinstance(v, torch.Tensor) else None


def _rank(n) -> int:
    s = _shape(n)
    return len(s) if s is not None else 0


def _nd(d: int, rank: int) -> int:
    return d + rank if d < 0 else d


def _arg(node: fx.Node, i: int, name: str, default=None):
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _where(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path = list(stack.values())[-1][0]
        path = path.removeprefix("L['self'].").removeprefix("model.").removeprefix("model")
        return f"{path} ({node.name})" if path else node.name
    return node.name


def _module_of(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    if path.startswith("L['self']"):
        path = path[len("L['self']"):].lstrip(".")
    path = path.removeprefix("model.")
    return "" if path == "model" else path


def _entries(segs: list[Seg]) -> int:
    return sum(s.count * s.repeat for s in segs)


def _freeze(g: DependencyGraph, annots, reason: str) -> None:
    for a in annots:
        if isinstance(a, Annot):
            for s in g.current(a.segs):
                if s.space is not None:
                    g.freeze(s.space, reason)


def _annots(args) -> list[Annot]:
    out = []
    for a in args:
        if isinstance(a, Annot):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(_annots(a))
    return out


def op_name(node: fx.Node) -> str:
    """The ATen packet name of a node's target (``"view"``, ``"linear"``, ``"getitem"``)."""
    return _op(node)


def tensor_shape(node) -> tuple[int, ...] | None:
    """The shape of the tensor a node produces (None for non-tensors)."""
    return _shape(node)


def _op(node: fx.Node) -> str:
    t = node.target
    if t is operator.getitem:
        return "getitem"
    pkt = getattr(t, "overloadpacket", None)
    return getattr(pkt, "__name__", None) or getattr(t, "__name__", str(t))


def _unhandled(g: DependencyGraph, node: fx.Node, why: str, annots) -> None:
    g.unhandled(_where(node), f"{_op(node)}()", why, [a for a in annots if isinstance(a, Annot)])


def _param_space(g: DependencyGraph, p: PRef, d: int, size: int) -> int:
    """A space for axis ``d`` of a parameter-derived tensor: its members are
    the parameter's axis (sliced with whatever channels it meets)."""
    sid = g.new_space(size, "param")
    g.member(sid, p.module, p.tensor, p.axes[d], 0, 1, "norm")
    return sid


# ------------------------------------------------------------------ aligning layouts
def _rescale(g: DependencyGraph, segs: list[Seg], total: int, kind: str = "heads") -> list[Seg] | None:
    """The same spaces laid over ``total`` positions instead of
    ``_entries(segs)``: a channel covers proportionally more positions
    (merged with inner axes) or fewer (split: channels coarsened into blocks).
    None when the proportions do not fit the channel boundaries."""
    segs = g.current(segs)
    old = _entries(segs)
    if total == old:
        return segs
    out = []
    for s in segs:
        e = s.count * s.repeat * total
        if e % old:
            return None
        e //= old
        if s.space is None:
            out.append(Seg(None, e, 1))
            continue
        if e % s.count == 0:  # each channel still covers whole positions
            out.append(Seg(s.space, s.count, e // s.count))
            continue
        # fewer positions than channels: blocks of channels per position
        if s.count % e:
            return None
        f = s.count // e
        if s.repeat != 1:
            return None
        g.coarsen(s.space, f, kind)
        out.append(Seg(g.find(s.space), e, 1))
    return out


def _cut(g: DependencyGraph, segs: list[Seg], bounds: list[int]) -> list[list[Seg]] | None:
    """Split an axis layout at the given position boundaries (refining spaces
    that straddle a boundary); None if a boundary falls inside a channel."""
    segs = list(g.current(segs))
    pieces, cur, pos = [], [], 0
    bounds = list(bounds)
    i = 0
    while i < len(segs):
        s = segs[i]
        e = s.count * s.repeat
        nxt = bounds[0] if bounds else None
        if nxt is None or pos + e <= nxt:
            cur.append(s)
            pos += e
            i += 1
            if nxt is not None and pos == nxt:
                pieces.append(cur)
                cur = []
                bounds.pop(0)
            continue
        k = nxt - pos  # split inside this seg
        if k % s.repeat:
            return None
        if s.space is None:
            segs[i:i + 1] = [Seg(None, k, 1), Seg(None, e - k, 1)]
            continue
        parts = g.refine(s.space, [k // s.repeat, s.count - k // s.repeat])
        segs[i:i + 1] = [Seg(parts[0], k // s.repeat, s.repeat), Seg(parts[1], s.count - k // s.repeat, s.repeat)]
    if cur:
        pieces.append(cur)
    return pieces


def _align(g: DependencyGraph, a: list[Seg], b: list[Seg], why: str) -> bool:
    """Unite two layouts of the same axis (refining and coarsening spaces as
    needed so they match channel for channel); False if they cannot match."""
    a, b = list(g.current(a)), list(g.current(b))
    if _entries(a) != _entries(b):
        return False
    i = j = 0
    while i < len(a) and j < len(b):
        x, y = a[i], b[j]
        ex, ey = x.count * x.repeat, y.count * y.repeat
        if ex != ey:
            big, small = (x, y) if ex > ey else (y, x)
            k = min(ex, ey)
            piece = _cut(g, [big], [k])
            if piece is None:
                return False
            flat = [s for p in piece for s in p]
            if ex > ey:
                a[i:i + 1] = flat
            else:
                b[j:j + 1] = flat
            a, b = g.current(a), g.current(b)
            continue
        if x.space is None and y.space is None:
            pass
        elif x.space is None or y.space is None:
            g.freeze(x.space if x.space is not None else y.space, why + " (combined with channels no layer produces)")
        else:
            if x.count != y.count:
                hi, lo = (x, y) if x.count > y.count else (y, x)
                if hi.count % lo.count:
                    g.freeze(x.space, why)
                    g.freeze(y.space, why)
                    i, j = i + 1, j + 1
                    continue
                g.coarsen(hi.space, hi.count // lo.count)
            g.union(x.space, y.space)
            a, b = g.current(a), g.current(b)
        i, j = i + 1, j + 1
    return True


def _as_annot(g: DependencyGraph, v, node_in: fx.Node, out_rank: int, dim: int, why: str):
    """An operand of an elementwise op against channels tracked on output
    axis ``dim``: its Annot moved to that axis, a new parameter space, or
    None (it broadcasts along the channel axis)."""
    s = _shape(node_in)
    if s is None:
        return None  # a Python scalar
    d = dim - (out_rank - len(s))
    if d < 0 or s[d] == 1:
        return None
    if isinstance(v, Annot):
        return Annot(v.dim + out_rank - len(s), v.segs, v.outer)
    if isinstance(v, PRef) and v.axes[d] is not None:
        return Annot(dim, [Seg(_param_space(g, v, d, s[d]), s[d])])
    return "fixed"


# ------------------------------------------------------------------ rules: elementwise
def _passthrough(g, node, args):
    a = args[0] if args else None
    if isinstance(a, (Annot, PRef)):
        return a
    return None


def _elementwise(g, node, args):
    out = _shape(node)
    if out is None:
        return None
    rank = len(out)
    ins = [(raw, v) for raw, v in zip(node.args, args) if isinstance(raw, fx.Node)]
    tracked = [(raw, v) for raw, v in ins if isinstance(v, Annot)]
    if not tracked:
        # a parameter combined with scalars keeps its provenance (e.g. 1 + weight)
        refs = [(r, v) for r, v in ins if isinstance(v, PRef)]
        others = [r for r, v in ins if not isinstance(v, PRef)]
        if len(refs) == 1 and all(_shape(r) is not None and math.prod(_shape(r)) == 1 for r in others):
            raw, p = refs[0]
            pad = rank - len(_shape(raw))
            if pad >= 0 and tuple(_shape(raw)) == out[pad:]:
                return PRef(p.module, p.tensor, (None,) * pad + p.axes)
        return None
    first_raw, first = tracked[0]
    dim = first.dim + rank - _rank(first_raw)
    res = Annot(dim, g.current(first.segs), first.outer)
    why = f"{_op(node)} at {_where(node)}"
    for raw, v in ins:
        if v is first:
            continue
        other = _as_annot(g, v, raw, rank, dim, why)
        if other is None:
            continue
        if other == "fixed":
            if isinstance(v, Annot):
                _unhandled(g, node, "combines channels tracked on different axes", [res, v])
                return None
            _freeze(g, [res], f"{why} combines the channels with a computed tensor")
            continue
        if other.dim != dim:
            _unhandled(g, node, "combines channels tracked on different axes", [res, other])
            return None
        if other.outer != res.outer:
            _freeze(g, [res, other], f"{why} combines channels merged differently with other axes")
            continue
        if not _align(g, res.segs, other.segs, f"{why} combines differently laid-out channels"):
            _freeze(g, [res, other], f"{why} combines differently laid-out channels")
    return Annot(dim, g.current(res.segs), res.outer)


def _where_op(g, node, args):  # where(cond, a, b)
    return _elementwise(g, node, args)


def _masked_fill(g, node, args):
    x = args[0]
    if not isinstance(x, Annot):
        return None
    ms = _shape(node.args[1]) if isinstance(node.args[1], fx.Node) else None
    rank = _rank(node)
    if ms is not None:
        d = x.dim - (rank - len(ms))
        if d >= 0 and ms[d] != 1:
            _freeze(g, [x], f"masked_fill at {_where(node)} masks per channel")
    return x


# ------------------------------------------------------------------ rules: layers
def _w_axis(w: PRef, d: int) -> int | None:
    return w.axes[d] if isinstance(w, PRef) and d < len(w.axes) else None


def _produce(g: DependencyGraph, size: int, kind: str, outs: list[tuple[PRef, int | None]]) -> int:
    sid = g.new_space(size, kind)
    for p, axis in outs:
        if p is not None and axis is not None:
            g.member(sid, p.module, p.tensor, axis, 0, 1, "out")
    return sid


def _consume(g: DependencyGraph, a: Annot, reads: list[tuple[PRef, int | None]], role: str = "in",
             observe: tuple[str, int] | None = None) -> None:
    if a.outer != 1:  # the channels repeat along the axis with another axis folded in
        _freeze(g, [a], f"{reads[0][0].module if reads and reads[0][0] else 'a layer'} reads channels merged "
                "with another axis")
        return
    off = 0
    for s in g.current(a.segs):
        if s.space is not None:
            for p, axis in reads:
                if p is not None and axis is not None:
                    g.member(s.space, p.module, p.tensor, axis, off, s.repeat, role)
            if observe is not None:
                g.observe(s.space, observe[0], observe[1], off, s.repeat)
        off += s.count * s.repeat


def _contract(g, node, x: Annot | None, xdim_in: int, w: PRef | Any, w_in: int, w_out: int, bias,
              out_dim: int, kind: str):
    """A layer that contracts input axis ``xdim_in`` with weight axis ``w_in``
    and produces weight axis ``w_out`` on output axis ``out_dim``."""
    out_size = _shape(node)[out_dim]
    if not isinstance(w, PRef) or _w_axis(w, w_in) is None:
        if isinstance(x, Annot) and x.dim == xdim_in:
            _unhandled(g, node, "contracts the channels with a computed (non-parameter) weight", [x])
        return x if isinstance(x, Annot) and x.dim != xdim_in else None
    if isinstance(x, Annot) and x.dim != xdim_in:
        return x  # the layer maps another axis; the channels pass through (its own output is not tracked)
    if isinstance(x, Annot):
        _consume(g, x, [(w, _w_axis(w, w_in))], observe=(w.module, xdim_in))
    outs = [(w, _w_axis(w, w_out))]
    if isinstance(bias, PRef):
        outs.append((bias, bias.axes[0]))
    sid = _produce(g, out_size, kind, outs)
    return Annot(out_dim, [Seg(sid, out_size)])


def _linear(g, node, args):
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    r = _rank(node)
    return _contract(g, node, x, _rank(node.args[0]) - 1, w, 1, 0, b, r - 1, "neurons")


def _addmm(g, node, args):  # addmm(bias, x, w): x @ w + bias, w (in, out)
    b, x, w = args[0], args[1], args[2]
    return _contract(g, node, x, 1, w, 0, 1, b, 1, "neurons")


def _matmul(g, node, args):
    a, b = args[0], args[1]
    ra, rb = _rank(node.args[0]), _rank(node.args[1])
    r = _rank(node)
    if isinstance(b, PRef) and rb == 2:
        return _contract(g, node, a, ra - 1, b, 0, 1, None, r - 1, "neurons")
    if isinstance(a, PRef) and ra == 2:  # W @ x: rows of W make output axis -2
        return _contract(g, node, b, rb - 2, a, 1, 0, None, r - 2, "neurons")
    if ra < 2 or rb < 2:
        if _annots([a, b]):
            _unhandled(g, node, "vector products of tracked channels", [a, b])
        return None
    res = None
    why = f"matmul at {_where(node)}"
    # contraction axes
    if isinstance(a, Annot) and a.dim == ra - 1 or isinstance(b, Annot) and b.dim == rb - 2:
        _freeze(g, [a, b], f"{why} sums over the channels")
        return None
    if isinstance(a, Annot):
        res = Annot(a.dim + r - ra, a.segs, a.outer)  # rows or a batch axis
    if isinstance(b, Annot):
        bb = Annot(b.dim + r - rb, b.segs, b.outer)
        if res is None:
            res = bb
        elif res.dim == bb.dim:
            if not _align(g, res.segs, bb.segs, why):
                _freeze(g, [res, bb], why + " combines differently laid-out channels")
        else:
            _unhandled(g, node, "both operands carry channels on different axes", [res, bb])
            return None
    if res is not None and res.dim < r - 2:  # a batch axis: the other operand must broadcast or share it
        for raw, v in ((node.args[0], a), (node.args[1], b)):
            if not isinstance(v, Annot):
                s = _shape(raw)
                d = res.dim - (r - len(s))
                if d >= 0 and s[d] != 1:
                    _freeze(g, [res], f"{why} pairs the channels with an untracked batch axis")
    return Annot(res.dim, g.current(res.segs), res.outer) if res is not None else None


def _conv(g, node, args):
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    groups = _arg(node, 6, "groups", 1) if _op(node) == "conv2d" or _op(node) == "conv1d" else _arg(node, 8, "groups", 1)
    xs = _shape(node.args[0])
    out_size = _shape(node)[1]
    if not isinstance(w, PRef):
        if isinstance(x, Annot):
            _unhandled(g, node, "convolution with a computed weight", [x])
        return None
    if isinstance(x, Annot) and x.dim != 1:
        _unhandled(g, node, "channels arrive on another axis than 1", [x])
        return None
    if groups == 1:
        return _contract(g, node, x, 1, w, 1, 0, b, 1, "channels")
    cin = xs[1]
    outs = [(w, _w_axis(w, 0))] + ([(b, b.axes[0])] if isinstance(b, PRef) else [])
    if not isinstance(x, Annot):
        sid = _produce(g, groups, "channels", [])
        for p, axis in outs:
            if axis is not None:
                g.member(sid, p.module, p.tensor, axis, 0, out_size // groups, "out")
        g.freeze(sid, f"grouped convolution {_where(node)} reads fixed input channels")
        return Annot(1, [Seg(sid, groups, out_size // groups)])
    # grouped / depthwise: group k reads input block k and writes output block k
    units = _rescale(g, x.segs, groups, "channels")
    if units is None:
        _freeze(g, [x], f"grouped convolution {_where(node)} splits channel blocks")
        sid = g.new_space(out_size, "channels")
        g.freeze(sid, f"grouped convolution {_where(node)}")
        return Annot(1, [Seg(sid, out_size)])
    per_in = cin // groups
    unit_annot = Annot(1, units)
    out_segs = _rescale(g, units, out_size)
    _consume(g, Annot(1, out_segs), outs, role="dw")
    if per_in > 1 or out_size != cin:
        pass  # weight axis 1 (per-group inputs) is never sliced
    return Annot(1, g.current(out_segs)) if unit_annot else None


def _batch_norm(g, node, args):
    x = args[0]
    if not isinstance(x, Annot):
        return None
    if x.dim != 1:
        _unhandled(g, node, "channels arrive on another axis than 1", [x])
        return None
    reads = [(p, p.axes[0]) for p in args[1:5] if isinstance(p, PRef)]
    if not reads:
        _freeze(g, [x], f"batch_norm at {_where(node)} has neither affine parameters nor running statistics")
        return x
    _consume(g, x, reads, role="norm")
    return x


def _native_bn(g, node, args):  # returns (out, mean, invstd)
    out = _batch_norm(g, node, args)
    return [out, None, None]


def _layer_norm(g, node, args):
    x = args[0]
    if not isinstance(x, Annot):
        return None
    shape = _arg(node, 1, "normalized_shape")
    r = _rank(node)
    nd = len(shape)
    if x.dim < r - nd:
        return x
    if nd != 1:
        _freeze(g, [x], f"layer_norm at {_where(node)} normalises over several axes with the channels")
        return x
    reads = [(p, p.axes[0]) for p in args[2:4] if isinstance(p, PRef)]
    if not reads:
        _freeze(g, [x], f"layer_norm at {_where(node)} has no affine parameters")
        return x
    _consume(g, x, reads, role="norm")
    for s in g.current(x.segs):
        if s.space is not None:
            g.inexact(s.space)
    return x


def _group_norm(g, node, args):
    x = args[0]
    if not isinstance(x, Annot):
        return None
    if x.dim != 1:
        _freeze(g, [x], f"group_norm at {_where(node)} sees channels on another axis")
        return x
    groups = _arg(node, 1, "num_groups")
    units = _rescale(g, x.segs, groups, "channels")
    if units is None:
        _freeze(g, [x], f"group_norm at {_where(node)} splits channel blocks")
        return x
    segs = _rescale(g, units, _shape(node)[1])
    reads = [(p, p.axes[0]) for p in args[2:4] if isinstance(p, PRef)]
    _consume(g, Annot(1, segs), reads, role="norm")
    return Annot(1, segs)


def _embedding(g, node, args):
    w = args[0]
    if not isinstance(w, PRef):
        return None
    r = _rank(node)
    size = _shape(node)[-1]
    sid = _produce(g, size, "neurons", [(w, w.axes[1])])
    return Annot(r - 1, [Seg(sid, size)])


def _sdpa(g, node, args):
    q, k, v = args[0], args[1], args[2]
    mask = args[3] if len(args) > 3 else None
    r = _rank(node)
    hd = r - 3
    why = f"attention at {_where(node)}"
    for raw, a in ((node.args[0], q), (node.args[1], k), (node.args[2], v)):
        if isinstance(a, Annot) and a.dim + r - _rank(raw) != hd:
            _freeze(g, [q, k, v], f"{why} sees channels on another axis than the heads")
            return None
    if any(isinstance(a, Annot) and a.outer != 1 for a in (q, k, v, mask)):
        _freeze(g, [q, k, v, mask], f"{why} sees heads merged with another axis")
        return None
    hq = _shape(node.args[0])[hd]
    kv = [a for a in (k, v) if isinstance(a, Annot)]
    if isinstance(q, Annot):
        res = Annot(hd, g.current(q.segs), q.outer)
    elif kv:
        res = None
    else:
        return None
    for a in kv:  # key/value heads, repeated to the query heads (grouped-query attention)
        up = _rescale(g, a.segs, hq)
        if res is None:
            res = Annot(hd, up)
        elif not _align(g, res.segs, up, why):
            _freeze(g, [res, a], why + " pairs differently laid-out heads")
    if isinstance(mask, Annot) and res is not None:
        m = Annot(mask.dim + r - _rank(node.args[3]), mask.segs, mask.outer)
        if m.dim != hd or not _align(g, res.segs, m.segs, why):
            _freeze(g, [res, mask], why + " has a per-channel mask on another axis")
    elif isinstance(mask, PRef) and res is not None:
        ms = _shape(node.args[3])
        d = hd - (r - len(ms))
        if d >= 0 and ms[d] != 1:
            m = _as_annot(g, mask, node.args[3], r, hd, why)
            if isinstance(m, Annot):
                _align(g, res.segs, m.segs, why)
    elif res is not None and len(node.args) > 3 and isinstance(node.args[3], fx.Node):
        ms = _shape(node.args[3])
        d = hd - (r - len(ms))
        if d >= 0 and ms[d] != 1:
            _freeze(g, [res], why + " has a per-head mask")
    if not isinstance(q, Annot) or any(not isinstance(a, Annot) for a in (k, v)):
        _freeze(g, [res], why + " pairs tracked heads with fixed ones")
    return Annot(hd, g.current(res.segs), res.outer) if res is not None else None


# ------------------------------------------------------------------ rules: shapes
def _prod(xs) -> int:
    return int(math.prod(xs)) if xs else 1


def _locate(src: tuple, dst: tuple, c: int, entries: int) -> tuple[int, int, int] | None:
    """Where the channel factor of axis ``c`` (``entries`` positions, each
    covering the ``post`` = prod(src[c+1:]) positions after it) lands in
    ``dst``: (dst axis, its positions per copy of the channels, copies along
    the axis). Reshapes keep the row-major flat order, so the factor is the
    flat-index digit range [post, post * entries); it must end inside one
    dst axis and start on an axis boundary or inside that axis."""
    post = _prod(src[c + 1:])
    lo, hi = post, post * entries
    stride = 1
    for d in range(len(dst) - 1, -1, -1):
        sd = stride
        stride *= dst[d]
        if not sd < hi <= stride:
            continue
        if stride % hi:
            return None
        copies = stride // hi
        if sd <= lo:  # the whole factor is inside axis d
            if lo % sd:
                return None
            return d, entries * (lo // sd), copies
        if sd % lo:  # the factor is split between axis d and the axes after it
            return None
        if entries % (sd // lo):
            return None
        return d, entries // (sd // lo), copies
    return None


def _view(g, node, args):
    x = args[0]
    src, dst = _shape(node.args[0]), _shape(node)
    if isinstance(x, PRef):
        axes = [None] * len(dst)
        for i, a in enumerate(x.axes):
            if a is None or src[i] == 1:
                continue
            hit = _locate(src, dst, i, src[i])
            if hit is not None and hit[1] == src[i] and hit[2] == 1:
                axes[hit[0]] = a
        return PRef(x.module, x.tensor, tuple(axes)) if any(a is not None for a in axes) else None
    if not isinstance(x, Annot):
        return None
    entries = _entries(g.current(x.segs))
    hit = _locate(src, dst, x.dim, entries)
    if hit is None:
        _unhandled(g, node, f"reshapes {list(src)} to {list(dst)}, interleaving the channels with other axes", [x])
        return None
    d, size, copies = hit
    segs = _rescale(g, x.segs, size)
    if segs is None:
        _freeze(g, [x], f"{_op(node)} at {_where(node)} splits channels inside a block")
        return None
    # the source's own copies (an outer axis merged before) stay outside the channel factor
    out = Annot(d, segs, copies)
    if copies == 1:
        _site(g, node, out, _arg(node, 1, "size"), d)
    return out


def _site(g: DependencyGraph, node: fx.Node, out: Annot, sizes, d: int) -> None:
    """Record a size constant given for the tracked axis (not -1)."""
    if isinstance(sizes, (list, tuple)) and d < len(sizes) and isinstance(sizes[d], int) and sizes[d] != -1:
        g.sites.append(Site(node.name, _op(node), _module_of(node), int(sizes[d]), g.current(out.segs)))


def _flatten(g, node, args):
    return _view(g, node, args)


def _unsqueeze(g, node, args):
    x = args[0]
    r = _rank(node)
    d = _nd(_arg(node, 1, "dim"), r)
    if isinstance(x, PRef):
        axes = list(x.axes)
        axes.insert(d, None)
        return PRef(x.module, x.tensor, tuple(axes))
    if not isinstance(x, Annot):
        return None
    return Annot(x.dim + (1 if d <= x.dim else 0), x.segs, x.outer)


def _squeeze(g, node, args):
    x = args[0]
    src = _shape(node.args[0])
    if not isinstance(x, (Annot, PRef)):
        return None
    keep = [i for i, s in enumerate(src) if not (s == 1 and _squeezed(node, i, len(src)))]
    if isinstance(x, PRef):
        return PRef(x.module, x.tensor, tuple(x.axes[i] for i in keep))
    return Annot(keep.index(x.dim), x.segs, x.outer) if x.dim in keep else None


def _squeezed(node, i, rank) -> bool:
    dims = _arg(node, 1, "dim", None)
    if dims is None:
        return True
    dims = dims if isinstance(dims, (list, tuple)) else [dims]
    return i in [_nd(d, rank) for d in dims]


def _expand(g, node, args):
    x = args[0]
    src, dst = _shape(node.args[0]), _shape(node)
    pad = len(dst) - len(src)
    if isinstance(x, PRef):
        return PRef(x.module, x.tensor, (None,) * pad + tuple(a if src[i] == dst[i + pad] else None
                                                                for i, a in enumerate(x.axes)))
    if not isinstance(x, Annot):
        return None
    out = Annot(x.dim + pad, x.segs, x.outer)
    _site(g, node, out, _arg(node, 1, "size"), out.dim)
    return out


def _permute(g, node, args):
    x = args[0]
    r = _rank(node)
    dims = [_nd(int(d), r) for d in _arg(node, 1, "dims")]
    if isinstance(x, PRef):
        return PRef(x.module, x.tensor, tuple(x.axes[d] for d in dims))
    if not isinstance(x, Annot):
        return None
    return Annot(dims.index(x.dim), x.segs, x.outer)


def _transpose(g, node, args):
    x = args[0]
    r = _rank(node)
    if _op(node) in ("t", "numpy_T"):
        d0, d1 = 0, r - 1
    else:
        d0, d1 = _nd(int(node.args[1]), r), _nd(int(node.args[2]), r)
    swap = {d0: d1, d1: d0}
    if isinstance(x, PRef):
        axes = list(x.axes)
        axes[d0], axes[d1] = axes[d1], axes[d0]
        return PRef(x.module, x.tensor, tuple(axes))
    if not isinstance(x, Annot):
        return None
    return Annot(swap.get(x.dim, x.dim), x.segs, x.outer)


def _cat(g, node, args):
    raws = node.args[0]
    vals = args[0]
    r = _rank(node)
    dim = _nd(_arg(node, 1, "dim", 0), r)
    why = f"cat at {_where(node)}"
    tracked = [v for v in vals if isinstance(v, Annot)]
    if not tracked:
        return None
    if any(v.outer != 1 for v in tracked):
        _freeze(g, tracked, f"{why} joins channels merged with other axes")
        return None
    if all(v.dim == dim for v in tracked):  # channels side by side
        segs: list[Seg] = []
        for raw, v in zip(raws, vals):
            if isinstance(v, Annot):
                segs.extend(g.current(v.segs))
            else:
                n = _shape(raw)[dim]
                if isinstance(v, PRef) and v.axes[dim] is not None:
                    segs.append(Seg(_param_space(g, v, dim, n), n))
                else:
                    segs.append(Seg(None, n))
        return Annot(dim, segs)
    # concatenation along another axis: every input must carry the same channels
    cdim = tracked[0].dim
    res = Annot(cdim, g.current(tracked[0].segs))
    for raw, v in zip(raws, vals):
        if v is tracked[0]:
            continue
        other = _as_annot(g, v, raw, r, cdim, why)
        if other is None:
            continue
        if other == "fixed" or other.dim != cdim or not _align(g, res.segs, other.segs, why):
            _freeze(g, [res] + ([v] if isinstance(v, Annot) else []), why + " joins the channels with fixed ones")
    return Annot(cdim, g.current(res.segs), res.outer)


def _split(g, node, args):
    x = args[0]
    src = _shape(node.args[0])
    r = len(src)
    op = _op(node)
    if op == "chunk":
        n = _arg(node, 1, "chunks")
        dim = _nd(_arg(node, 2, "dim", 0), r)
        step = -(-src[dim] // n)
        sizes = [min(step, src[dim] - i) for i in range(0, src[dim], step)]
    elif op == "unbind":
        dim = _nd(_arg(node, 1, "dim", 0), r)
        sizes = [1] * src[dim]
    else:
        dim = _nd(_arg(node, 2, "dim", 0), r)
        sz = _arg(node, 1, "split_size")
        if isinstance(sz, int):
            sizes = [min(sz, src[dim] - i) for i in range(0, src[dim], sz)]
        else:
            sizes = list(sz)
    if isinstance(x, PRef):
        if x.axes[dim] is not None:
            return [None] * len(sizes)
        if op == "unbind":
            return [PRef(x.module, x.tensor, x.axes[:dim] + x.axes[dim + 1:])] * len(sizes)
        return [x] * len(sizes)
    if not isinstance(x, Annot):
        return [None] * len(sizes)
    if x.dim != dim:
        if op == "unbind":
            return [Annot(x.dim - (1 if x.dim > dim else 0), x.segs, x.outer)] * len(sizes)
        return [x] * len(sizes)
    if op == "unbind" or x.outer != 1:
        _freeze(g, [x], f"{op} at {_where(node)} takes channels apart")
        return [None] * len(sizes)
    bounds = list(itertools_acc(sizes))[:-1]
    pieces = _cut(g, x.segs, bounds)
    if pieces is None:
        _freeze(g, [x], f"{op} at {_where(node)} splits inside a channel")
        return [None] * len(sizes)
    outs = [Annot(dim, p) for p in pieces]
    sz = _arg(node, 1, "split_size")
    if op == "split" and isinstance(sz, int):
        _site(g, node, outs[0], [sz] * (dim + 1), dim)
    return outs


def itertools_acc(xs):
    acc = 0
    for x in xs:
        acc += x
        yield acc


def _getitem(g, node, args):
    seq, i = args[0], node.args[1]
    if isinstance(seq, list) and isinstance(i, int) and i < len(seq):
        return seq[i]
    return None


def _slice(g, node, args):
    x = args[0]
    src = _shape(node.args[0])
    r = len(src)
    dim = _nd(_arg(node, 1, "dim", 0), r)
    full = _shape(node)[dim] == src[dim]
    if isinstance(x, PRef):
        if x.axes[dim] is not None and not full:
            return PRef(x.module, x.tensor, x.axes[:dim] + (None,) + x.axes[dim + 1:])
        return x
    if not isinstance(x, Annot):
        return None
    if x.dim == dim and not full:
        _freeze(g, [x], f"slice at {_where(node)} keeps only some of the channels")
        return None
    return x


def _select(g, node, args):
    x = args[0]
    r = _rank(node.args[0])
    dim = _nd(_arg(node, 1, "dim"), r)
    if isinstance(x, PRef):
        return PRef(x.module, x.tensor, x.axes[:dim] + x.axes[dim + 1:])
    if not isinstance(x, Annot):
        return None
    if x.dim == dim:
        _freeze(g, [x], f"select at {_where(node)} takes one channel")
        return None
    return Annot(x.dim - (1 if x.dim > dim else 0), x.segs, x.outer)


def _index(g, node, args):
    x = args[0]
    idx = node.args[1]
    if not isinstance(x, (Annot, PRef)):
        return None
    pos = [i for i, t in enumerate(idx) if t is not None]
    src = _shape(node.args[0])
    if len(pos) != 1:
        if isinstance(x, Annot):
            _freeze(g, [x], f"index at {_where(node)} with several index tensors")
        return None
    p = pos[0]
    k = _rank(idx[p])
    if isinstance(x, PRef):
        axes = x.axes[:p] + (None,) * k + x.axes[p + 1:]
        return PRef(x.module, x.tensor, axes)
    if x.dim == p:
        _freeze(g, [x], f"index at {_where(node)} gathers channels")
        return None
    _ = src
    return Annot(x.dim if x.dim < p else x.dim - 1 + k, x.segs, x.outer)


def _index_select(g, node, args):
    x = args[0]
    dim = _nd(_arg(node, 1, "dim"), _rank(node.args[0]))
    if isinstance(x, PRef):
        return PRef(x.module, x.tensor, x.axes[:dim] + (None,) + x.axes[dim + 1:])
    if not isinstance(x, Annot):
        return None
    if x.dim == dim:
        _freeze(g, [x], f"{_op(node)} at {_where(node)} picks channels")
        return None
    return x


def _reduce(g, node, args):
    x = args[0]
    if not isinstance(x, Annot):
        return None
    r = _rank(node.args[0])
    dims = _arg(node, 1, "dim", None)
    op = _op(node)
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        _freeze(g, [x], f"{op} at {_where(node)} reduces over every axis, the channels too")
        return None
    dims = [_nd(int(d), r) for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
    keep = _arg(node, 2, "keepdim", False)
    if op in ("var", "std"):
        keep = node.kwargs.get("keepdim", keep)
    if x.dim in dims:
        _freeze(g, [x], f"{op} at {_where(node)} reduces over the channels")
        return None
    return Annot(x.dim if keep else x.dim - sum(d < x.dim for d in dims), x.segs, x.outer)


def _softmax(g, node, args):
    x = args[0]
    if not isinstance(x, Annot):
        return None
    if _nd(_arg(node, 1, "dim"), _rank(node)) == x.dim:
        _freeze(g, [x], f"{_op(node)} at {_where(node)} normalises over the channels")
    return x


def _pool(g, node, args):
    x = args[0]
    if not isinstance(x, Annot):
        return None
    op = _op(node)
    nd = 1 if op.endswith("1d") else 3 if op.endswith("3d") else 2
    if x.dim >= _rank(node.args[0]) - nd:
        _freeze(g, [x], f"{op} at {_where(node)} pools over the channels")
        return None
    return [x, None] if op.endswith("with_indices") else x


def _pad(g, node, args):
    x = args[0]
    if not isinstance(x, Annot):
        return None
    pads = list(_arg(node, 1, "pad"))
    r = _rank(node)
    k = r - 1 - x.dim  # pads come in (before, after) pairs from the last axis
    if 2 * k + 1 < len(pads) and (pads[2 * k] or pads[2 * k + 1]):
        _freeze(g, [x], f"pad at {_where(node)} pads the channels")
        return None
    return x


def _roll(g, node, args):
    x = args[0]
    if not isinstance(x, Annot):
        return None
    dims = _arg(node, 2, "dims", [])
    dims = [_nd(d, _rank(node)) for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
    if not dims or x.dim in dims:
        _freeze(g, [x], f"roll at {_where(node)} moves the channels")
        return None
    return x


def _interp(g, node, args):
    x = args[0]
    if isinstance(x, Annot) and x.dim >= 2:
        _freeze(g, [x], f"{_op(node)} at {_where(node)} resamples the channel axis")
        return None
    return x if isinstance(x, Annot) else None


def _stack(g, node, args):
    vals = args[0]
    r = _rank(node)
    dim = _nd(_arg(node, 1, "dim", 0), r)
    tracked = [v for v in vals if isinstance(v, Annot)]
    if not tracked:
        return None
    base = tracked[0]
    res = Annot(base.dim + (1 if dim <= base.dim else 0), g.current(base.segs), base.outer)
    for v in vals:
        if v is base:
            continue
        if not isinstance(v, Annot) or not _align(g, base.segs, v.segs, f"stack at {_where(node)}"):
            _freeze(g, [base] + ([v] if isinstance(v, Annot) else []), f"stack at {_where(node)} joins fixed channels")
    return Annot(res.dim, g.current(res.segs), res.outer)


def _ignore(g, node, args):
    return None


_PASS = ("gelu", "relu", "relu_", "silu", "silu_", "sigmoid", "tanh", "hardtanh", "hardtanh_", "dropout", "dropout_",
         "contiguous", "clone", "to", "_to_copy", "type_as", "alias", "detach", "detach_", "lift_fresh_copy", "neg",
         "rsqrt", "sqrt", "exp", "abs", "hardswish", "hardswish_", "hardsigmoid", "leaky_relu", "leaky_relu_", "elu",
         "softplus", "mish", "erf", "log", "sin", "cos", "clamp", "clamp_min", "clamp_max", "gelu_", "reciprocal",
         "square", "sign", "feature_dropout", "alpha_dropout", "native_dropout", "celu", "selu", "prelu", "logit",
         "tanh_", "sigmoid_", "floor", "round", "lift_fresh", "_assert_tensor_metadata_passthrough", "float",
         "log_sigmoid", "silu_backward", "relu6", "hardsigmoid_", "identity")
register_aten_rule(_PASS, _passthrough)
register_aten_rule(("add", "sub", "mul", "div", "add_", "sub_", "mul_", "div_", "maximum", "minimum", "pow",
                    "rsub", "true_divide", "where", "lerp", "addcmul", "fmod", "remainder"), _elementwise)
register_aten_rule(("masked_fill", "masked_fill_"), _masked_fill)
register_aten_rule("linear", _linear)
register_aten_rule("addmm", _addmm)
register_aten_rule(("matmul", "mm", "bmm"), _matmul)
register_aten_rule(("conv1d", "conv2d", "conv3d", "convolution", "_convolution"), _conv)
register_aten_rule("batch_norm", _batch_norm)
register_aten_rule(("_native_batch_norm_legit_no_training", "native_batch_norm"), _native_bn)
register_aten_rule(("layer_norm",), _layer_norm)
register_aten_rule("group_norm", _group_norm)
register_aten_rule("embedding", _embedding)
register_aten_rule("scaled_dot_product_attention", _sdpa)
register_aten_rule(("view", "reshape", "_unsafe_view", "flatten", "unflatten", "view_as", "reshape_as"), _view)
register_aten_rule("unsqueeze", _unsqueeze)
register_aten_rule("squeeze", _squeeze)
register_aten_rule(("expand", "expand_as"), _expand)
register_aten_rule("permute", _permute)
register_aten_rule(("transpose", "t", "swapaxes", "numpy_T"), _transpose)
register_aten_rule(("cat", "concat"), _cat)
register_aten_rule(("split", "split_with_sizes", "chunk", "unbind", "tensor_split"), _split)
register_aten_rule("getitem", _getitem)
register_aten_rule("slice", _slice)
register_aten_rule("select", _select)
register_aten_rule("index", _index)
register_aten_rule(("index_select", "gather"), _index_select)
register_aten_rule(("mean", "sum", "amax", "amin", "var", "std", "max", "min", "norm", "linalg_vector_norm",
                    "logsumexp", "prod"), _reduce)
register_aten_rule(("softmax", "_softmax", "log_softmax", "_log_softmax"), _softmax)
register_aten_rule(("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "avg_pool1d", "avg_pool2d",
                    "avg_pool3d", "max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices",
                    "adaptive_max_pool2d", "adaptive_max_pool1d"), _pool)
register_aten_rule(("pad", "constant_pad_nd"), _pad)
register_aten_rule("roll", _roll)
register_aten_rule(("upsample_nearest2d", "upsample_bilinear2d", "upsample_bicubic2d", "interpolate",
                    "upsample_nearest1d", "upsample_linear1d"), _interp)
register_aten_rule("stack", _stack)
register_aten_rule(("_assert_tensor_metadata", "_assert_scalar", "sym_size", "sym_constrain_range_for_size",
                    "_set_grad_enabled", "eq", "ne", "lt", "le", "gt", "ge", "__and__", "__or__", "logical_not",
                    "isnan", "isinf", "any", "all", "argmax", "argmin", "new_ones", "new_zeros", "new_full",
                    "new_empty", "ones_like", "zeros_like", "full_like", "empty_like"), _ignore)
# ops on a channel axis whose result depends on every channel
register_aten_rule(("cumsum", "sort", "topk", "flip", "repeat", "repeat_interleave", "tile"),
                   lambda g, node, args: _order_op(g, node, args))


def _order_op(g, node, args):
    x = args[0]
    if not isinstance(x, Annot):
        return None
    op = _op(node)
    if op in ("cumsum", "sort", "topk", "flip"):
        dims = _arg(node, 1, "dim" if op != "flip" else "dims", -1)
        dims = [_nd(d, _rank(node.args[0])) for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
        if x.dim not in dims:
            return x if op != "sort" and op != "topk" else [x, None]
    _freeze(g, [x], f"{op} at {_where(node)} reorders or repeats the channels")
    return None


# ------------------------------------------------------------------ the walk
def _map(x, env):
    if isinstance(x, fx.Node):
        return env.get(x)
    if isinstance(x, (list, tuple)):
        return [_map(v, env) for v in x]
    if isinstance(x, dict):
        return {k: _map(v, env) for k, v in x.items()}
    return x


def _normalise(node: fx.Node) -> None:
    """Rewrite an ATen call's arguments to schema order, positionally (the
    graph is only read, never run), so rules find ``attn_mask`` & co. by index."""
    schema = getattr(node.target, "_schema", None)
    if schema is None or not node.kwargs:
        return
    full = list(node.args)
    for i, a in enumerate(schema.arguments):
        if i < len(full):
            continue
        if a.name in node.kwargs:
            full.append(node.kwargs[a.name])
        elif a.has_default_value():
            full.append(a.default_value)
        else:
            return
    node.args, node.kwargs = tuple(full), {}


def walk_exported(g: DependencyGraph, eg: ExportedGraph) -> None:
    """Annotate every node of the exported graph and build ``g``'s spaces."""
    env: dict[fx.Node, Any] = {}
    for node in eg.gm.graph.nodes:
        if node.op == "call_function":
            _normalise(node)
        if node.op == "placeholder":
            owner = eg.tensors.get(node.name)
            s = _shape(node)
            env[node] = PRef(owner[0], owner[1], tuple(range(len(s)))) if owner and s is not None else None
            continue
        if node.op == "get_attr":
            env[node] = None
            continue
        if node.op == "output":
            for a in _annots(_map(node.args, env)):
                for s in g.current(a.segs):
                    if s.space is not None:
                        g.freeze(s.space, "reaches the model output")
            continue
        args = _map(list(node.args), env)
        kwargs = _map(dict(node.kwargs), env)
        live = _annots(args) + _annots(list(kwargs.values()))
        has_ref = any(isinstance(a, PRef) for a in args) or any(isinstance(v, PRef) for v in kwargs.values())
        if not live and not has_ref:
            env[node] = None
            continue
        op = _op(node)
        rule = _RULES.get(op)
        if rule is None:
            if live:
                _unhandled(g, node, "no dependency rule for this op", live)
            env[node] = None
            continue
        out = rule(g, node, args)
        if isinstance(out, list) and not isinstance(node.meta.get("val"), (list, tuple)):
            out = out[0]
        env[node] = out
