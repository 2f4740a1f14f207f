"""What one layer or one functional op costs, from the tensors of a real call.

Two tables, both extensible:

- module counters (``register_module_counter(cls, fn)``): ``fn(module, args,
  kwargs, output) -> Work`` for layer types whose cost follows from their
  attributes and input/output shapes (Linear, Conv, norms, pooling,
  activations, embeddings, MultiheadAttention). Looked up along the class's
  MRO, so subclasses (e.g. a fake-quant Linear) are counted like their base.
- function counters (``register_function_counter(name, fn)``): ``fn(args,
  kwargs, out) -> Work`` for torch functions seen by a TorchFunctionMode
  while a module without a counter runs its own code (``torch.matmul``,
  ``@``, ``F.linear``, ``F.conv*``, ``F.scaled_dot_product_attention``,
  ``F.softmax``, elementwise arithmetic...). ``FREE_OPS`` are shape, copy and
  creation ops that cost nothing; any other function is *unknown*, and the
  layer calling it is reported as uncounted.

Conventions (documented, applied the same everywhere):

- ``macs``: multiply-accumulates of conv / linear / matmul-type ops (including
  attention's QK^T and AV); ``flops`` of those = 2 * macs (bias adds folded in).
- activations and elementwise arithmetic: 1 FLOP per output element;
  softmax / log-softmax: 3 per element (exp, sum, divide).
- BatchNorm (inference, statistics frozen): 2 per element (scale, shift).
  LayerNorm / GroupNorm / InstanceNorm: 5 per element (mean, variance,
  normalise) plus 2 with an affine transform; RMSNorm: 3 plus 1 with a weight.
  ``F.normalize``: 3 per element.
- pooling: kernel size per output element; adaptive pooling: one per input element.
- reductions (sum, mean, max, ...): one per input element.
- embeddings: 0 MACs (a lookup); EmbeddingBag adds its looked-up rows.
- RNN / GRU / LSTM: the gate matmuls (input and recurrent, plus an LSTM
  projection) are MACs; gate activations and the cell update are FLOPs.
Only ``macs`` are meant to be compared across tools; the other FLOPs are
there so normalisation, activations and pooling are visible, never folded
into ``macs``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

from ..core.layers import field_for, register_layer


@dataclass
class Work:
    """Cost of one call. ``kinds`` maps a kind (conv, linear, matmul, attention,
    norm, pool, activation, softmax, elementwise, reduction, embedding, rnn, none) to its FLOPs."""

    macs: int = 0
    flops: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, kind: str, *, macs: int = 0, flops: int | None = None) -> "Work":
        f = 2 * macs if flops is None else flops
        return cls(int(macs), int(f), {kind: int(f)})

    def add(self, other: "Work") -> None:
        self.macs += other.macs
        self.flops += other.flops
        for k, v in other.kinds.items():
            self.kinds[k] = self.kinds.get(k, 0) + v


ModuleCounter = Callable[[nn.Module, tuple, dict, Any], Work]
FunctionCounter = Callable[[tuple, dict, Any], Work]
_FUNCTION_COUNTERS: dict[str, FunctionCounter] = {}


def register_module_counter(cls: type, fn: ModuleCounter | None = None):
    """Count ``cls`` layers (and subclasses) with ``fn(module, args, kwargs, output) -> Work``.
    Usable as a decorator. Ops inside a counted layer are not counted again."""
    if fn is None:
        return lambda f: register_module_counter(cls, f) or f
    register_layer(cls, macs=fn)  # the ``macs`` field of the layer's core.layers adapter
    return fn


def register_function_counter(name: str, fn: FunctionCounter | None = None):
    """Count the torch function whose ``__name__`` is ``name`` with ``fn(args, kwargs, out) -> Work``."""
    if fn is None:
        return lambda f: register_function_counter(name, f) or f
    _FUNCTION_COUNTERS[name] = fn
    return fn


def module_counter(module: nn.Module) -> ModuleCounter | None:
    return field_for(module, "macs")


def function_name(func) -> str:
    return getattr(func, "__name__", None) or type(func).__name__


def function_counter(name: str) -> FunctionCounter | None:
    return _FUNCTION_COUNTERS.get(name)


# ------------------------------------------------------------------ helpers
def first_tensor(x) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, (list, tuple)):
        for v in x:
            t = first_tensor(v)
            if t is not None:
                return t
        return None
    # model outputs such as transformers' ModelOutput (dict-like) or dataclasses
    values = getattr(x, "values", None)
    if callable(values):
        try:
            return first_tensor(list(values()))
        except Exception:  # noqa: BLE001 - not a mapping after all
            return None
    return None


def _numel(x) -> int:
    t = first_tensor(x)
    return int(t.numel()) if t is not None else 0


def _arg(args: tuple, kwargs: dict, i: int, name: str, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _prod(xs) -> int:
    return int(math.prod(int(x) for x in xs))


def _kernel_numel(k, dims: int) -> int:
    if isinstance(k, int):
        return k ** dims
    return _prod(k)


# ------------------------------------------------------------------ module counters
def _linear(m: nn.Linear, args, kwargs, out):
    return Work.of("linear", macs=_numel(out) * m.in_features)


def _bilinear(m: nn.Bilinear, args, kwargs, out):
    return Work.of("linear", macs=_numel(out) * m.in1_features * m.in2_features)


def _conv(m, args, kwargs, out):
    k = _prod(m.kernel_size)
    if m.transposed:  # every input element is scattered through a kernel of out/groups channels
        return Work.of("conv", macs=_numel(args[0] if args else kwargs.get("input")) * (m.out_channels // m.groups) * k)
    return Work.of("conv", macs=_numel(out) * (m.in_channels // m.groups) * k)


def _per_element(kind: str, per: int):
    def count(m, args, kwargs, out):
        return Work.of(kind, flops=per * _numel(out))

    return count


def _batchnorm(m, args, kwargs, out):
    return Work.of("norm", flops=2 * _numel(out))


def _stat_norm(m, args, kwargs, out):
    affine = getattr(m, "weight", None) is not None
    return Work.of("norm", flops=(5 + (2 if affine else 0)) * _numel(out))


def _rms_norm(m, args, kwargs, out):
    return Work.of("norm", flops=(3 + (1 if m.weight is not None else 0)) * _numel(out))


def _pool(m, args, kwargs, out):
    dims = out.dim() - 2 if isinstance(out, torch.Tensor) and out.dim() >= 3 else 1
    dims = {"1d": 1, "2d": 2, "3d": 3}.get(type(m).__name__[-2:].lower(), dims)
    return Work.of("pool", flops=_numel(out) * _kernel_numel(m.kernel_size, dims))


def _adaptive_pool(m, args, kwargs, out):
    return Work.of("pool", flops=_numel(args[0] if args else kwargs.get("input")))


def _zero(kind: str):
    def count(m, args, kwargs, out):
        return Work.of(kind, flops=0)

    return count


def _embedding_bag(m, args, kwargs, out):
    idx = args[0] if args else kwargs.get("input")
    return Work.of("embedding", flops=_numel(idx) * m.embedding_dim)


def attention_macs(batch: int, heads: int, L: int, S: int, e_qk: int, e_v: int) -> tuple[int, int]:
    """MACs of QK^T and AV over ``batch * heads`` heads (per-head widths e_qk, e_v), and the softmax FLOPs."""
    bh = batch * heads
    return bh * L * S * (e_qk + e_v), 3 * bh * L * S


def _mha(m: nn.MultiheadAttention, args, kwargs, out):
    q = _arg(args, kwargs, 0, "query")
    k = _arg(args, kwargs, 1, "key")
    v = _arg(args, kwargs, 2, "value")
    if q.dim() == 2:  # unbatched (L, E)
        n, L, S = 1, q.shape[0], k.shape[0]
    elif m.batch_first:
        n, L, S = q.shape[0], q.shape[1], k.shape[1]
    else:
        n, L, S = q.shape[1], q.shape[0], k.shape[0]
    e = m.embed_dim
    proj = n * L * q.shape[-1] * e + n * S * k.shape[-1] * e + n * S * v.shape[-1] * e
    s_att = S + (1 if m.bias_k is not None else 0) + (1 if m.add_zero_attn else 0)
    att, softmax = attention_macs(n, 1, L, s_att, e, e)  # summed over heads: head_dim * heads = e
    outp = n * L * e * m.out_proj.out_features
    macs = proj + att + outp
    w = Work.of("attention", macs=macs)
    w.add(Work.of("softmax", flops=softmax * m.num_heads))
    return w


_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
_CELL_UPDATE = {"LSTM": 5, "GRU": 5, "RNN_TANH": 0, "RNN_RELU": 0}  # elementwise ops per hidden unit and step


def _rnn(m: nn.RNNBase, args, kwargs, out):
    x = args[0] if args else kwargs["input"]
    if isinstance(x, nn.utils.rnn.PackedSequence):
        steps = int(x.data.shape[0])  # sum of the sequence lengths
    elif x.dim() == 2:  # unbatched (L, H_in)
        steps = int(x.shape[0])
    else:
        steps = int(x.shape[0] * x.shape[1])
    gates, d, h = _GATES[m.mode], 2 if m.bidirectional else 1, m.hidden_size
    h_out = getattr(m, "proj_size", 0) or h
    macs = flops = 0
    for layer in range(m.num_layers):
        h_in = m.input_size if layer == 0 else d * h_out
        macs += steps * d * (gates * h * (h_in + h_out) + (h * h_out if h_out != h else 0))
        flops += steps * d * h * (gates + _CELL_UPDATE[m.mode])
    w = Work.of("rnn", macs=macs)
    w.add(Work.of("activation", flops=flops))
    return w


for _cls in (nn.Linear,):
    register_module_counter(_cls, _linear)
register_module_counter(nn.Bilinear, _bilinear)
register_module_counter(nn.modules.conv._ConvNd, _conv)
register_module_counter(nn.modules.batchnorm._BatchNorm, _batchnorm)
for _cls in (nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm):
    register_module_counter(_cls, _stat_norm)
if hasattr(nn, "RMSNorm"):
    register_module_counter(nn.RMSNorm, _rms_norm)
for _cls in (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._LPPoolNd):
    register_module_counter(_cls, _pool)
for _cls in (nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd):
    register_module_counter(_cls, _adaptive_pool)
for _cls in (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
             nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Softsign,
             nn.LogSigmoid, nn.Tanhshrink, nn.Threshold, nn.GLU, nn.Hardshrink, nn.Softshrink, nn.RReLU):
    register_module_counter(_cls, _per_element("activation", 1))
for _cls in (nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d):
    register_module_counter(_cls, _per_element("softmax", 3))
for _cls in (nn.Identity, nn.Flatten, nn.Unflatten, nn.modules.dropout._DropoutNd, nn.ChannelShuffle,
             nn.PixelShuffle, nn.PixelUnshuffle, nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
             nn.modules.padding._ReplicationPadNd, nn.ZeroPad2d):
    register_module_counter(_cls, _zero("none"))
register_module_counter(nn.Embedding, _zero("embedding"))
register_module_counter(nn.EmbeddingBag, _embedding_bag)
register_module_counter(nn.MultiheadAttention, _mha)
register_module_counter(nn.RNNBase, _rnn)


# ------------------------------------------------------------------ function counters
class Uncountable(Exception):
    """Raised by a function counter for a form it cannot count; the op is then reported as uncounted."""


def _out_numel_times_k(kind: str, k_of: Callable[[tuple, dict], int]):
    def count(args, kwargs, out):
        return Work.of(kind, macs=_numel(out) * int(k_of(args, kwargs)))

    return count


# out = a @ b: every output element is a dot product of length a.shape[-1]
for _name in ("matmul", "__matmul__", "mm", "bmm", "mv", "dot", "vdot", "inner"):
    register_function_counter(_name, _out_numel_times_k("matmul", lambda a, kw: a[0].shape[-1] if a[0].dim() else 1))
register_function_counter("__rmatmul__", _out_numel_times_k("matmul", lambda a, kw: a[1].shape[-1]))
for _name in ("addmm", "baddbmm", "addmv"):
    register_function_counter(_name, _out_numel_times_k("matmul", lambda a, kw: _arg(a, kw, 1, "mat1", None).shape[-1]))


@register_function_counter("addbmm")
def _addbmm(args, kwargs, out):
    b1, b2 = _arg(args, kwargs, 1, "batch1"), _arg(args, kwargs, 2, "batch2")
    return Work.of("matmul", macs=b1.numel() * b2.shape[-1])


@register_function_counter("linear")
def _f_linear(args, kwargs, out):
    w = _arg(args, kwargs, 1, "weight")
    return Work.of("linear", macs=_numel(out) * (w.shape[-1] if w.dim() else 1))


@register_function_counter("bilinear")
def _f_bilinear(args, kwargs, out):
    w = _arg(args, kwargs, 2, "weight")
    return Work.of("linear", macs=_numel(out) * w.shape[1] * w.shape[2])


def _f_conv(args, kwargs, out):
    w = _arg(args, kwargs, 1, "weight")
    return Work.of("conv", macs=_numel(out) * _prod(w.shape[1:]))


def _f_conv_transpose(args, kwargs, out):
    x, w = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "weight")
    return Work.of("conv", macs=x.numel() * _prod(w.shape[1:]))


for _d in (1, 2, 3):
    register_function_counter(f"conv{_d}d", _f_conv)
    register_function_counter(f"conv_transpose{_d}d", _f_conv_transpose)


@register_function_counter("scaled_dot_product_attention")
def _f_sdpa(args, kwargs, out):
    q, k, v = (_arg(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
    batch = _prod(q.shape[:-2])
    macs, softmax = attention_macs(batch, 1, q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1])
    w = Work.of("attention", macs=macs)
    w.add(Work.of("softmax", flops=softmax))
    return w


@register_function_counter("multi_head_attention_forward")
def _f_mha(args, kwargs, out):
    q, k, v = (_arg(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
    heads = int(_arg(args, kwargs, 4, "num_heads"))
    e = int(_arg(args, kwargs, 3, "embed_dim_to_check"))
    n = 1 if q.dim() == 2 else q.shape[1]  # functional form is always (L, N, E)
    L, S = q.shape[0], k.shape[0]
    macs = n * (L * q.shape[-1] + S * k.shape[-1] + S * v.shape[-1]) * e + n * L * S * 2 * e + n * L * e * e
    w = Work.of("attention", macs=macs)
    w.add(Work.of("softmax", flops=3 * n * heads * L * S))
    return w


@register_function_counter("einsum")
def _f_einsum(args, kwargs, out):
    eq = args[0].replace(" ", "")
    ops = list(args[1]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
    lhs = eq.split("->")[0].split(",")
    if len(ops) != 2 or len(lhs) != 2:
        raise Uncountable(f"einsum with {len(ops)} operands")
    sizes: dict[str, int] = {}
    for spec, t in zip(lhs, ops):
        letters = list(spec.replace("...", ""))
        if "..." in spec:  # name the broadcast dimensions by their position from the right
            n_ell = t.dim() - len(letters)
            pre, post = spec.split("...")
            letters = list(pre) + [f"#{n_ell - i}" for i in range(n_ell)] + list(post)
        for ch, s in zip(letters, t.shape):
            sizes[ch] = max(sizes.get(ch, 1), int(s))
    return Work.of("matmul", macs=_prod(sizes.values()))


_ELEMENTWISE = """add sub subtract mul multiply div divide true_divide floor_divide remainder fmod pow float_power
sqrt rsqrt exp exp2 log log2 log10 log1p expm1 abs absolute neg negative reciprocal clamp clamp_min clamp_max clip
where masked_fill addcmul addcdiv lerp maximum minimum fmax fmin sin cos tan asin acos atan atan2 sinh cosh erf erfc
erfinv sign sgn square round floor ceil trunc frac hypot xlogy nan_to_num scale
eq ne lt le gt ge equal logical_and logical_or logical_not logical_xor bitwise_and bitwise_or bitwise_not isnan isinf
isfinite __add__ __radd__ __iadd__ __sub__ __rsub__ __isub__ __mul__ __rmul__ __imul__ __truediv__ __rtruediv__
__itruediv__ __div__ __rdiv__ __idiv__ __floordiv__ __rfloordiv__ __ifloordiv__ __mod__ __rmod__ __pow__ __rpow__
__ipow__ __neg__ __abs__ __eq__ __ne__ __lt__ __le__ __gt__ __ge__ __and__ __rand__ __iand__ __or__ __ror__ __ior__
__xor__ __rxor__ __invert__ __lshift__ __rshift__""".split()
_ACTIVATIONS = """relu relu6 hardtanh leaky_relu gelu silu sigmoid tanh elu selu celu hardswish hardsigmoid mish softplus
softsign prelu rrelu glu logsigmoid threshold hardshrink softshrink tanhshrink""".split()
_SOFTMAX = "softmax log_softmax softmin _softmax".split()
_REDUCTIONS = """sum mean nansum nanmean prod amax amin max min norm var std var_mean std_mean logsumexp cumsum cumprod
argmax argmin all any count_nonzero median""".split()

for _name in _ELEMENTWISE:
    for _n in (_name, _name + "_") if not _name.startswith("__") else (_name,):
        register_function_counter(_n, lambda a, kw, out: Work.of("elementwise", flops=_numel(out)))
for _name in _ACTIVATIONS:
    for _n in (_name, _name + "_"):
        register_function_counter(_n, lambda a, kw, out: Work.of("activation", flops=_numel(out)))
for _name in _SOFTMAX:
    register_function_counter(_name, lambda a, kw, out: Work.of("softmax", flops=3 * _numel(out)))
for _name in _REDUCTIONS:
    register_function_counter(_name, lambda a, kw, out: Work.of("reduction", flops=_numel(a[0] if a else kw.get("input"))))


@register_function_counter("batch_norm")
def _f_batch_norm(args, kwargs, out):
    return Work.of("norm", flops=2 * _numel(out))


def _f_stat_norm(weight_index: int):
    def count(args, kwargs, out):
        affine = _arg(args, kwargs, weight_index, "weight") is not None
        return Work.of("norm", flops=(5 + (2 if affine else 0)) * _numel(out))

    return count


register_function_counter("layer_norm", _f_stat_norm(2))
register_function_counter("group_norm", _f_stat_norm(2))
register_function_counter("instance_norm", _f_stat_norm(3))


@register_function_counter("rms_norm")
def _f_rms_norm(args, kwargs, out):
    return Work.of("norm", flops=(3 + (1 if _arg(args, kwargs, 2, "weight") is not None else 0)) * _numel(out))


@register_function_counter("normalize")
def _f_normalize(args, kwargs, out):
    return Work.of("norm", flops=3 * _numel(out))


def _f_pool(dims: int):
    def count(args, kwargs, out):
        k = _arg(args, kwargs, 1, "kernel_size")
        return Work.of("pool", flops=_numel(out) * _kernel_numel(k, dims))

    return count


def _f_adaptive_pool(args, kwargs, out):
    return Work.of("pool", flops=_numel(_arg(args, kwargs, 0, "input")))


for _d in (1, 2, 3):
    for _name in (f"max_pool{_d}d", f"_max_pool{_d}d", f"max_pool{_d}d_with_indices", f"avg_pool{_d}d", f"lp_pool{_d}d"):
        register_function_counter(_name, _f_pool(_d))
    for _name in (f"adaptive_avg_pool{_d}d", f"adaptive_max_pool{_d}d", f"_adaptive_max_pool{_d}d",
                  f"adaptive_max_pool{_d}d_with_indices"):
        register_function_counter(_name, _f_adaptive_pool)


@register_function_counter("embedding_bag")
def _f_embedding_bag(args, kwargs, out):
    idx, w = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "weight")
    return Work.of("embedding", flops=_numel(idx) * w.shape[-1])


# Ops that cost no arithmetic: shapes, views, copies, indexing, creation, dtype and device moves,
# attribute access, dropout (profiling runs in eval mode, where it is the identity), embedding lookups.
FREE_OPS = frozenset("""
__get__ __set__ __getitem__ __setitem__ __len__ __bool__ __index__ __int__ __float__ __contains__ __iter__ __hash__
__format__ __repr__ __reversed__ __array__ __deepcopy__ __reduce_ex__ __setstate__
size dim ndimension numel nelement item tolist stride storage_offset is_contiguous data_ptr element_size
is_floating_point is_complex is_signed get_device type_as requires_grad_ retain_grad detach detach_ clone
view view_as reshape reshape_as flatten unflatten ravel squeeze squeeze_ unsqueeze unsqueeze_ transpose transpose_ t t_
permute movedim moveaxis swapaxes swapdims expand expand_as broadcast_to broadcast_tensors contiguous as_strided
unfold diagonal narrow select index_select gather take take_along_dim masked_select chunk split split_with_sizes
tensor_split unbind cat concat concatenate stack hstack vstack dstack repeat repeat_interleave tile flip fliplr flipud
roll rot90 pad tril triu tril_ triu_ to type float double half bfloat16 int long short bool byte char cpu cuda
zeros ones empty full arange range linspace logspace eye zeros_like ones_like empty_like full_like rand randn randint
rand_like randn_like randint_like new_zeros new_ones new_empty new_full new_tensor tensor as_tensor from_numpy
scalar_tensor fill_ zero_ copy_ masked_fill_ index_put_ scatter scatter_ index_copy index_fill one_hot
dropout dropout_ dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout embedding
is_tensor is_grad_enabled is_nonzero meshgrid nonzero argwhere unique_consecutive
""".split())
