"""Wall-clock latency of a model or any callable, and a fair A/B comparison.

``latency`` times repeated calls after warm-up and reports the median, p90,
mean and minimum per call, the throughput, the batch size and the thread
count used. ``compare_latency`` times two models *alternately* in one process
(this machine's speed drifts within minutes; back-to-back blocks would
measure the drift) and reports the median of the per-pair ratios.

An ``nn.Module`` runs in eval mode under ``torch.no_grad()`` (its mode is
restored); any other callable (e.g. an ONNX Runtime session wrapper) is
called as ``fn(*inputs)`` (or ``fn(**inputs)`` for a dict). Very fast calls are repeated inside one timing
sample so a sample lasts at least ~0.2 ms; the figures are still per call.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Callable

import torch
import torch.nn as nn

from ..core.errors import ConfigError

_MIN_SAMPLE_S = 2e-4  # a timing sample lasts at least this long (timer resolution, loop overhead);
# short samples are less often cut by the scheduler on a busy machine
_MAX_CALLS_PER_SAMPLE = 1000


class _Call:
    """The example inputs as positional arguments (a tuple or list, or one tensor) or keyword arguments (a dict)."""

    def __init__(self, example_inputs):
        if isinstance(example_inputs, dict):
            self.args, self.kwargs = (), dict(example_inputs)
        elif isinstance(example_inputs, (list, tuple)):
            self.args, self.kwargs = tuple(example_inputs), {}
        else:
            self.args, self.kwargs = (example_inputs,), {}

    def values(self) -> tuple:
        return (*self.args, *self.kwargs.values())


def _infer_batch(call: "_Call") -> int:
    for a in call.values():
        shape = getattr(a, "shape", None)
        if shape is not None and len(shape) > 0:
            return int(shape[0])
    return 1


@contextlib.contextmanager
def _threads(n: int | None):
    before = torch.get_num_threads()
    if n is not None:
        if n < 1:
            raise ConfigError(f"threads must be >= 1, got {n}")
        torch.set_num_threads(int(n))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _inference(fn: Callable):
    if isinstance(fn, nn.Module):
        was_training = fn.training
        fn.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            fn.train(was_training)
    else:
        with torch.no_grad():
            yield


def _time_calls(fn: Callable, call: _Call, n: int) -> float:
    """Seconds per call, over ``n`` back-to-back calls."""
    args, kwargs = call.args, call.kwargs
    t0 = time.perf_counter()
    for _ in range(n):
        fn(*args, **kwargs)
    return (time.perf_counter() - t0) / n


def _calls_per_sample(fn: Callable, call: _Call) -> int:
    one = min(_time_calls(fn, call, 1) for _ in range(5))  # min: robust to a preempted call
    if one >= _MIN_SAMPLE_S:
        return 1
    return int(min(_MAX_CALLS_PER_SAMPLE, max(1, round(_MIN_SAMPLE_S / max(one, 1e-7)))))


def _percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _check(warmup: int, repeats: int) -> None:
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ConfigError(f"warmup must be >= 0, got {warmup}")


def latency(model_or_callable: Callable, example_inputs, *, warmup: int = 10, repeats: int = 50,
            threads: int | None = None, batch_size: int | None = None) -> dict:
    """Per-call latency of ``model_or_callable(*example_inputs)`` in milliseconds:
    ``median_ms``, ``p90_ms``, ``mean_ms``, ``min_ms``, ``throughput`` (samples/s at
    the median), ``batch_size`` (default: first dimension of the first input),
    ``threads`` (torch intra-op threads used; restored afterwards), ``repeats``
    and ``calls_per_repeat``."""
    _check(warmup, repeats)
    call = _Call(example_inputs)
    batch = int(batch_size or _infer_batch(call))
    with _threads(threads) as used, _inference(model_or_callable):
        for _ in range(warmup):
            _time_calls(model_or_callable, call, 1)
        n = _calls_per_sample(model_or_callable, call)
        samples = [_time_calls(model_or_callable, call, n) * 1e3 for _ in range(repeats)]
    median = statistics.median(samples)
    return {
        "median_ms": median,
        "p90_ms": _percentile(samples, 0.9),
        "mean_ms": statistics.fmean(samples),
        "min_ms": min(samples),
        "throughput": batch / (median / 1e3) if median > 0 else float("inf"),
        "batch_size": batch,
        "threads": used,
        "repeats": repeats,
        "calls_per_repeat": n,
    }


def compare_latency(a: Callable, b: Callable, example_inputs, *, threads: int | None = None, repeats: int = 30,
                    warmup: int = 5) -> dict:
    """Time ``a`` and ``b`` alternately (order swapped every pair) on the same
    inputs. ``ratio_median`` (= ``speedup``) is the median over pairs of
    a_ms / b_ms: above 1 means ``b`` is faster. Also each one's median and p90."""
    _check(warmup, repeats)
    call = _Call(example_inputs)
    with _threads(threads) as used, _inference(a), _inference(b):
        for _ in range(warmup):
            _time_calls(a, call, 1)
            _time_calls(b, call, 1)
        na, nb = _calls_per_sample(a, call), _calls_per_sample(b, call)
        ta, tb, ratios = [], [], []
        for i in range(repeats):
            if i % 2 == 0:
                sa = _time_calls(a, call, na)
                sb = _time_calls(b, call, nb)
            else:
                sb = _time_calls(b, call, nb)
                sa = _time_calls(a, call, na)
            ta.append(sa * 1e3)
            tb.append(sb * 1e3)
            ratios.append(sa / sb if sb > 0 else float("inf"))
    ratio = statistics.median(ratios)
    return {
        "ratio_median": ratio,
        "speedup": ratio,
        "a_median_ms": statistics.median(ta),
        "b_median_ms": statistics.median(tb),
        "a_p90_ms": _percentile(ta, 0.9),
        "b_p90_ms": _percentile(tb, 0.9),
        "ratio_p10": _percentile(ratios, 0.1),
        "ratio_p90": _percentile(ratios, 0.9),
        "batch_size": _infer_batch(call),
        "threads": used,
        "repeats": repeats,
    }


RUNTIMES = ("torch", "onnxruntime")


def _as_runnable(model: nn.Module, runtime: str, threads: int | None, example: tuple, path: str):
    """``model`` itself (``"torch"``), or an ONNX Runtime session of its float
    export written to ``path`` (``"onnxruntime"``)."""
    if runtime == "torch":
        return model
    from ..runtime.onnx_float import default_io_names, export_float, write_model
    from ..runtime.ort import OrtModel

    model = model.eval()
    proto = export_float(model, example, output_names=default_io_names(model, example)[1])
    return OrtModel(write_model(proto, path), threads=threads or torch.get_num_threads())


def speedup_fn(input_sets, *, runtime: str = "torch", threads: int | None = None, repeats: int = 30,
               reduce: str = "min") -> Callable[[nn.Module, nn.Module], float]:
    """``fn(dense, candidate) -> speedup`` for latency-driven searches:
    ``compare_latency`` of the two models on every input set in ``input_sets``
    (a list of input tuples, e.g. batch 1 and batch 32), then the ``"min"`` or
    the ``"mean"`` of the median ratios. ``runtime="onnxruntime"`` exports both
    models to float ONNX first (``torchslim.runtime.export_float``, in a temporary
    folder) and times ONNX Runtime sessions at ``threads`` intra-op threads;
    ``"torch"`` times the modules in eager PyTorch."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime {runtime!r} is unknown; use one of {list(RUNTIMES)}")
    if reduce not in ("min", "mean"):
        raise ConfigError(f"reduce must be 'min' or 'mean', got {reduce!r}")
    sets = [tuple(x) if isinstance(x, (tuple, list)) else (x,) for x in input_sets]
    if not sets:
        raise ConfigError("speedup_fn needs at least one input set")

    def measure(a, b) -> float:
        r = [compare_latency(a, b, x, threads=threads, repeats=repeats)["ratio_median"] for x in sets]
        return min(r) if reduce == "min" else sum(r) / len(r)

    if runtime == "torch":
        return measure

    def measure_ort(dense, cand) -> float:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            return measure(_as_runnable(dense, runtime, threads, sets[0], f"{tmp}/a.onnx"),
                           _as_runnable(cand, runtime, threads, sets[0], f"{tmp}/b.onnx"))

    return measure_ort


def time_fn(input_sets, *, runtime: str = "torch", threads: int | None = None, repeats: int | list[int] = 30,
            warmup: int = 5) -> Callable[[nn.Module], list[float]]:
    """``fn(model) -> [ms per input set]``: the fastest of ``repeats`` timed
    calls of ``model`` on each input set (the minimum is the estimate least
    disturbed by other work on the machine; for ranking many candidates, where
    ``speedup_fn``'s alternating pairs would cost twice the calls). With
    ``runtime="onnxruntime"`` the model is exported to float ONNX first and an
    ONNX Runtime session at ``threads`` is timed. ``repeats`` may give one
    count per input set (more for the fast small batches)."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime {runtime!r} is unknown; use one of {list(RUNTIMES)}")
    sets = [tuple(x) if isinstance(x, (tuple, list)) else (x,) for x in input_sets]
    if not sets:
        raise ConfigError("time_fn needs at least one input set")
    reps = [int(repeats)] * len(sets) if isinstance(repeats, int) else [int(r) for r in repeats]
    if len(reps) != len(sets):
        raise ConfigError(f"time_fn: {len(reps)} repeat counts for {len(sets)} input sets")

    def measure(model: nn.Module) -> list[float]:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            run = _as_runnable(model, runtime, threads, sets[0], f"{tmp}/m.onnx")
            return [latency(run, x, warmup=warmup, repeats=r, threads=threads)["min_ms"] for x, r in zip(sets, reps)]

    return measure


__all__ = ["latency", "compare_latency", "speedup_fn", "time_fn", "RUNTIMES"]
