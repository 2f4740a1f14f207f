"""Sensitivity analysis: how much does each layer tolerate pruning?

``sensitivity_scan`` prunes one layer at a time (by magnitude, or any
criterion) to each of a list of sparsities, measures accuracy or loss on the
given data (calibration / holdout data, never the test split), and restores
the layer. The result is a table, a JSON file and a PNG plot.

``allocate`` turns a scan into per-layer sparsities that remove a requested
fraction of a budget - parameters, MACs, or measured latency - greedily
taking, at every step, the layer step that costs the least metric per unit of
budget saved. The latency budget is the sum of per-layer latencies *measured*
at each sparsity (``measure_layer_latency``: the faster of the dense kernel
and a CSR sparse kernel), because unstructured zeros save time only where a
sparse kernel beats the dense one.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import Callable, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..artifact.format import atomic_write_bytes
from ..core.errors import ConfigError
from ..core.scope import Scope
from .importance import importance_scores
from .unstructured import masks_from_scores, select_layers

__all__ = ["SensitivityScan", "sensitivity_scan", "allocate", "layer_costs", "measure_layer_latency"]

DEFAULT_SPARSITIES = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)


@dataclasses.dataclass
class SensitivityScan:
    metric: str  # "accuracy" (higher is better) or "loss" (lower is better)
    sparsities: list[float]
    dense: float  # metric of the unpruned model
    layers: dict[str, dict]  # name -> {"params", "macs", "values": [...], "latency_ms": [dense, *per sparsity]?}
    data: str = ""  # which data the metric was measured on

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SensitivityScan":
        return cls(**d)

    def save_json(self, path) -> Path:
        path = Path(path)
        atomic_write_bytes(path, json.dumps(self.to_dict(), indent=2).encode())
        return path

    @classmethod
    def load_json(cls, path) -> "SensitivityScan":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def rows(self) -> list[list]:
        return [[name, d["params"], d["macs"], *d["values"]] for name, d in self.layers.items()]

    def columns(self) -> list[str]:
        return ["layer", "params", "MACs", *[f"@{s:g}" for s in self.sparsities]]

    def plot(self, path, *, title: str | None = None) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import io

        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, d in self.layers.items():
            ax.plot(self.sparsities, d["values"], marker="o", label=name)
        ax.axhline(self.dense, color="gray", linestyle="--", label="dense")
        ax.set_xlabel("sparsity of the layer alone")
        ax.set_ylabel(f"{self.metric} ({self.data})" if self.data else self.metric)
        ax.set_title(title or "per-layer pruning sensitivity")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", ncol=2)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        path = Path(path)
        atomic_write_bytes(path, buf.getvalue())
        return path


def _metric(model, data, metric, loss_fn, batch_size=1000) -> float:
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            x, y = data.x[i: i + batch_size], data.y[i: i + batch_size]
            if metric == "accuracy":
                total += float((model(x).argmax(1) == y).sum())
            else:
                if loss_fn is None:
                    val = F.cross_entropy(model(x), y, reduction="sum")
                else:
                    out = loss_fn(model, x, y)
                    val = (out[0] if isinstance(out, tuple) else out) * len(y)
                total += float(val)
            n += len(y)
    return total / max(1, n)


def layer_costs(model: nn.Module, layers: dict[str, nn.Module], example_inputs: tuple) -> dict[str, dict]:
    """Per layer: weight count and MACs per example (MACs of a Linear/Conv =
    weight count x output positions), measured by forward hooks."""
    out: dict[str, dict] = {}
    hooks = []
    batch = example_inputs[0].shape[0] if example_inputs and torch.is_tensor(example_inputs[0]) else 1

    def hook(name):
        def fn(module, inp, output):
            w = module.weight
            positions = output.numel() // output.shape[-1 if isinstance(module, nn.Linear) else 1]
            out[name] = {"params": w.numel(), "macs": int(w.numel() * positions // max(1, batch)),
                         "input": tuple(inp[0].shape)}
        return fn

    for name, m in layers.items():
        hooks.append(m.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model.eval()
            model(*example_inputs)
    finally:
        for h in hooks:
            h.remove()
    for name, m in layers.items():
        out.setdefault(name, {"params": m.weight.numel(), "macs": 0, "input": None})
    return out


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def measure_layer_latency(module: nn.Module, x: torch.Tensor, sparsities, *, repeats: int = 30) -> list[float]:
    """Measured milliseconds of ``module`` on input ``x``: dense first, then for each
    sparsity the faster of the dense kernel and a CSR sparse matmul (Linear
    layers; other layers have no sparse kernel here, so they keep the dense time).
    The dense and sparse timings alternate within one process."""
    w = module.weight.detach()
    b = module.bias.detach() if module.bias is not None else None
    with torch.no_grad():
        dense = _median_ms(lambda: module(x), repeats)
        out = [dense]
        for s in sparsities:
            if not isinstance(module, nn.Linear):
                out.append(dense)
                continue
            k = int(round(s * w.numel()))
            keep = masks_from_scores({"w": w.abs()}, {}, k)["w"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                csr = (w * keep).to_sparse_csr()
            x2 = x.reshape(-1, x.shape[-1])

            def sparse_fn():
                y = torch.sparse.mm(csr, x2.t()).t()
                return y + b if b is not None else y

            out.append(min(dense, _median_ms(sparse_fn, repeats)))
    return out


def sensitivity_scan(model: nn.Module, data, *, sparsities=DEFAULT_SPARSITIES, criterion: str = "l1",
                     scope: Scope | None = None, metric: Literal["accuracy", "loss"] = "accuracy",
                     example_inputs: tuple | None = None, loss_fn: Callable | None = None, latency: bool = False,
                     progress: bool = False) -> SensitivityScan:
    """Per-layer metric vs sparsity on ``data`` (use calibration data, not test).
    The model is not modified (the scan works on a copy)."""
    if metric not in ("accuracy", "loss"):
        raise ConfigError(f"metric must be 'accuracy' or 'loss', got {metric!r}")
    sparsities = [float(s) for s in sparsities]
    if not sparsities or any(not 0.0 < s < 1.0 for s in sparsities) or sorted(sparsities) != sparsities:
        raise ConfigError(f"sparsities must be increasing values in (0, 1), got {sparsities}")
    from .masks import refresh

    work = copy.deepcopy(refresh(model)).eval()
    layers = select_layers(work, scope)
    if example_inputs is None:
        example_inputs = (data.x[:1],)
    costs = layer_costs(work, layers, example_inputs)
    scores = importance_scores(work, layers, criterion, data=data, loss_fn=loss_fn)
    dense = _metric(work, data, metric, loss_fn)
    from tqdm.auto import tqdm

    result: dict[str, dict] = {}
    for name, layer in tqdm(layers.items(), desc="sensitivity", disable=not progress, leave=False):
        param = layer.weight_orig if hasattr(layer, "weight_orig") else layer.weight
        original = param.detach().clone()
        current = getattr(layer, "weight_mask", None)
        values = []
        for s in sparsities:
            keep = masks_from_scores({name: scores[name]}, {name: current}, int(round(s * param.numel())))[name]
            with torch.no_grad():
                param.copy_(original * keep)
            values.append(_metric(work, data, metric, loss_fn))
        with torch.no_grad():
            param.copy_(original)
        entry = {"params": costs[name]["params"], "macs": costs[name]["macs"], "values": values}
        if latency:
            x = _layer_input(work, layer, example_inputs)
            entry["latency_ms"] = measure_layer_latency(layer, x, sparsities)
        result[name] = entry
    return SensitivityScan(metric=metric, sparsities=sparsities, dense=dense, layers=result,
                           data=f"{getattr(data, 'name', '')}/{getattr(data, 'split', '')}".strip("/"))


def _layer_input(model, layer, example_inputs) -> torch.Tensor:
    seen = {}

    def grab(module, inputs, output) -> None:  # returns None: a forward hook's return value replaces the output
        seen.setdefault("x", inputs[0].detach())

    h = layer.register_forward_hook(grab)
    try:
        with torch.no_grad():
            model(*example_inputs)
    finally:
        h.remove()
    return seen["x"]


def allocate(scan: SensitivityScan, target: float, *, budget: Literal["params", "macs", "latency"] = "params",
             max_sparsity: float | None = None) -> dict[str, float]:
    """Per-layer sparsities (from the scan's grid) that remove at least
    ``target`` (a fraction) of the scanned layers' total ``budget``, chosen
    greedily by least metric loss per unit of budget saved. For params and
    MACs the last layer step is cut to land exactly on the target."""
    if not 0.0 <= target < 1.0:
        raise ConfigError(f"allocation target must be a fraction in [0, 1), got {target}")
    if budget not in ("params", "macs", "latency"):
        raise ConfigError(f"budget must be 'params', 'macs' or 'latency', got {budget!r}")
    names = list(scan.layers)
    levels = [0.0] + list(scan.sparsities)
    sign = 1.0 if scan.metric == "accuracy" else -1.0  # metric loss = sign * (before - after)

    def value(n, i):
        return scan.dense if i == 0 else scan.layers[n]["values"][i - 1]

    def cost(n, i):
        d = scan.layers[n]
        if budget == "latency":
            if "latency_ms" not in d:
                raise ConfigError("budget='latency' needs a scan made with latency=True")
            return d["latency_ms"][i]
        return d[budget] * (1.0 - levels[i])

    allowed = [i for i, s in enumerate(levels) if max_sparsity is None or s <= max_sparsity + 1e-12]
    top = max(allowed)
    state = {n: 0 for n in names}
    total0 = sum(cost(n, 0) for n in names)
    if total0 <= 0:
        raise ConfigError(f"the scanned layers have no {budget} to reduce")
    goal = (1.0 - target) * total0
    total = total0
    while total > goal + 1e-9:
        best = None
        for n in names:
            i = state[n]
            if i >= top:
                continue
            # look ahead to the first level that saves something (latency may be flat)
            for j in range(i + 1, top + 1):
                saved = cost(n, i) - cost(n, j)
                if saved > 1e-12:
                    loss = max(0.0, sign * (value(n, i) - value(n, j)))
                    key = (loss / saved, -saved)
                    if best is None or key < best[0]:
                        best = (key, n, j, saved)
                    break
        if best is None:
            reached = 1.0 - total / total0
            raise ConfigError(f"cannot remove {target:.1%} of {budget} with the scanned sparsities "
                              f"(at most {reached:.1%}); scan higher sparsities or lower the target")
        _, n, j, saved = best
        if budget != "latency" and total - saved < goal:  # land on the target inside this step
            need = total - goal
            frac = levels[state[n]] + need / max(1e-12, scan.layers[n][budget])
            state[n] = j
            out = {m: levels[state[m]] for m in names}
            out[n] = min(levels[j], frac)
            return out
        state[n] = j
        total -= saved
    return {n: levels[state[n]] for n in names}

