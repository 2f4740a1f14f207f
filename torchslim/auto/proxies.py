"""Cheap proxies: what can be known about a trial before its costly fine-tune.

* ``bytes_estimate``: the trial's compression stages applied without any
  training (one-shot magnitude pruning at the per-layer targets, dead units
  removed, weights shared by k-means) and the artifact written. Exact for
  stages that do not train; with gradual pruning it errs low (one-shot
  pruning leaves more units unread, which are then removed; on LeNet-5 it
  came out 8% to 40% under the fine-tuned artifact), so a trial stopped on it
  would have missed by even more.
* ``structure_model``: the pruned structure a structured stage will produce
  (it is fixed before the fine-tune), to time it on the target runtime.
* ``latency_table``: per channel group, the measured time saved by cutting
  that group alone to a few fractions (paired timing on the target runtime):
  groups whose cuts save nothing are not searched, and the AMC agent predicts
  a model's time from it (additively).
* ``proxy_accuracy``: holdout accuracy without fine-tuning (after BatchNorm
  recalibration), the AMC agent's reward.
* ``sensitivity_seeds``: per-layer sparsities from a sensitivity scan on the
  holdout (``prune.sensitivity.allocate``), warm starts for a search.
* ``density_floors``: from the same kind of scan, each layer's lowest density
  before one-shot pruning of that layer alone costs too much holdout
  accuracy: the lower end of its search range.
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

__all__ = ["bytes_estimate", "latency_table", "predicted_relative_latency", "proxy_accuracy", "density_floors"]


def _fields(stage: dict) -> dict:
    return {k: v for k, v in stage.items() if k not in ("name", "kind")}


def structure_model(model: nn.Module, stages: list[dict], example_inputs: tuple, *, calib_data=None
                    ) -> nn.Module | None:
    """The model after the trial's structural stage (``auto.structured``),
    without training; the model itself if there is none; None when the
    structure is only known by running the stage (the greedy allocation)."""
    from .stages import LayerwiseStructuredConfig, layerwise_structured

    for st in stages:
        if st["kind"] == "auto.structured":
            cfg = LayerwiseStructuredConfig.from_dict(_fields(st))
            pruned = layerwise_structured(model, example_inputs, cfg, calib_data=calib_data)
            if cfg.recalibrate_bn and calib_data is not None:
                from ..prune.recalibrate import recalibrate_bn

                recalibrate_bn(pruned, calib_data, batches=cfg.recalibrate_bn)
            return pruned.eval()
        if st["kind"] == "prune.structured":
            return None
    return model


@torch.no_grad()
def _one_shot_sparsity(model: nn.Module, stage: dict, example_inputs: tuple) -> nn.Module:
    from ..prune import masks
    from ..prune.dead import prune_unused_units, remove_dead_units
    from ..prune.unstructured import prune_to_sparsity

    prune_to_sparsity(model, float(stage.get("sparsity", 0.0)), ranking=stage.get("ranking", "layer"),
                      layer_amounts=dict(stage.get("layer_sparsity") or {}) or None)
    if stage.get("unused_units"):
        prune_unused_units(model)
    model = masks.remove(model)
    if stage.get("remove_dead"):
        remove_dead_units(model, example_inputs)
    return model


def bytes_estimate(model: nn.Module, stages: list[dict], example_inputs: tuple, *, calib_data=None) -> int | None:
    """Bytes of the artifact the trial's stages would write, estimated by
    running them without training (see the module doc); None when a stage
    cannot be run that way."""
    from ..core.config import apply, config_class
    from ..core.context import Context

    m = structure_model(model, stages, example_inputs, calib_data=calib_data)
    if m is None:
        return None
    m = copy.deepcopy(m)
    ctx = Context(example_inputs=example_inputs, calib_data=calib_data, progress=False)
    encode = None
    for st in stages:
        kind = st["kind"]
        if kind.startswith("decompose."):
            f = {k: v for k, v in _fields(st).items() if k not in ("finetune", "distill")}
            m = apply(m, config_class(kind).from_dict(f), ctx) or m
        elif kind in ("auto.agp", "prune.agp", "prune.unstructured"):
            m = _one_shot_sparsity(m, st, example_inputs)
        elif kind == "quantize.kmeans":
            from ..quantize.configs import KMeansConfig
            from ..quantize.kmeans import share_weights

            share_weights(m, KMeansConfig.from_dict({k: v for k, v in _fields(st).items() if k != "finetune"}))
        elif kind == "codec.encode":
            encode = st
    with tempfile.TemporaryDirectory() as tmp:
        if encode is not None:
            from ..codec.compact import save_compact

            path = Path(tmp) / "m.tslim"
            save_compact(m, path, index_bits=encode.get("index_bits"), huffman=encode.get("huffman", True),
                         fp16=encode.get("fp16", False))
        else:
            from ..artifact import save

            path = save(m, Path(tmp) / "m.safetensors")
        return int(Path(path).stat().st_size)


def latency_table(model: nn.Module, example_inputs: tuple, spec, *, keeps=(0.5,), round_to: int | None = None,
                  groups: list[str] | None = None) -> dict:
    """``{"keeps": [1.0, *keeps], "groups": {key: [0.0, saved...]}}``: the
    fraction of the baseline's time saved (``1 - 1/speedup``, the worst batch
    size) when only that group is cut to each kept fraction, made monotone
    (a deeper cut never counts as saving less)."""
    from ..prune.structured.plan import structured_plan
    from .stages import group_key, keep_count
    from .timing import paired_latency

    work = copy.deepcopy(model).eval()
    plan = structured_plan(work, example_inputs, round_to=round_to)
    keeps = sorted({float(k) for k in keeps}, reverse=True)
    fast = spec.replace(repeats=max(10, spec.repeats // 2))
    full = {g.id: g.size for g in plan.groups}
    out: dict = {"keeps": [1.0, *keeps], "groups": {}, "runtime": spec.runtime, "threads": spec.threads,
                 "batch_sizes": list(spec.batch_sizes)}
    with tempfile.TemporaryDirectory() as tmp:
        base_onnx = Path(tmp) / "base.onnx"
        for g in plan.groups:
            key = group_key(g)
            if groups is not None and key not in groups:
                continue
            saved = [0.0]
            for k in keeps:
                n = keep_count(g.size, k, round_to, g.kind)
                if n >= g.size:
                    saved.append(saved[-1])
                    continue
                cand = plan.apply({**full, g.id: n})
                r = paired_latency(work, cand, example_inputs, fast, baseline_onnx=base_onnx)
                s = 1.0 - 1.0 / max(min(r["speedup"].values()), 1e-6)
                saved.append(max(saved[-1], s))
            out["groups"][key] = saved
    return out


def _interp(xs: list[float], ys: list[float], x: float) -> float:
    """Piecewise-linear ``y(x)`` through points with decreasing ``xs``."""
    if x >= xs[0]:
        return ys[0]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x1 <= x <= x0:
            return y0 + (y1 - y0) * (x0 - x) / max(x0 - x1, 1e-12)
    # below the deepest measured cut: extrapolate the last segment's slope
    (x0, y0), (x1, y1) = (xs[-2], ys[-2]), (xs[-1], ys[-1])
    return min(0.99, y1 + (y1 - y0) * (x1 - x) / max(x0 - x1, 1e-12))


def predicted_relative_latency(table: dict, keep: dict[str, float]) -> float:
    """The model's time as a fraction of the baseline's when each group keeps
    ``keep[group]``: one minus the savings of the groups alone, summed."""
    saved = sum(_interp(table["keeps"], table["groups"][g], float(k)) for g, k in keep.items() if g in table["groups"])
    return max(0.01, 1.0 - saved)


def frozen_groups(table: dict, min_saving: float) -> set[str]:
    """Groups whose deepest measured cut saves less than ``min_saving``."""
    return {g for g, s in table["groups"].items() if max(s) < min_saving}


@torch.no_grad()
def proxy_accuracy(model: nn.Module, data, *, recalibrate: int = 0, recalib_data=None, batch_size: int = 1000
                   ) -> float:
    """Accuracy on ``data`` without fine-tuning, after re-estimating the
    BatchNorm statistics on ``recalibrate`` batches of ``recalib_data``."""
    from ..analysis.evaluate import evaluate

    if recalibrate and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        from ..prune.recalibrate import recalibrate_bn

        with torch.enable_grad():
            recalibrate_bn(model, recalib_data if recalib_data is not None else data, batches=recalibrate)
    return float(evaluate(model.eval(), data, batch_size=batch_size)["accuracy"])


def sensitivity_seeds(model: nn.Module, holdout, targets, *, layers: list[str]) -> list[dict[str, float]]:
    """Per-layer sparsities ({layer: sparsity}) removing each of ``targets``
    (fractions of the weights of ``layers``), allocated greedily from a
    one-shot sensitivity scan on ``holdout`` (least accuracy lost per weight
    removed)."""
    from ..core.scope import Scope
    from ..prune.sensitivity import allocate, sensitivity_scan

    scan = sensitivity_scan(model, holdout, sparsities=(0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995),
                            scope=Scope(names=tuple(layers)))
    return [allocate(scan, float(t), budget="params") for t in targets]


SCAN_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995)


def density_floors(model: nn.Module, holdout, *, layers: list[str], max_drop: float) -> tuple[dict[str, float],
                                                                                                dict]:
    """({layer: lowest density}, the scan): walking each layer's one-shot
    sensitivity from dense to sparse, the density where its holdout accuracy
    first falls ``max_drop`` points below the unpruned model's (linear
    between the scanned points; the scan's sparsest point if it never does)."""
    from ..core.scope import Scope
    from ..prune.sensitivity import sensitivity_scan

    scan = sensitivity_scan(model, holdout, sparsities=SCAN_SPARSITIES, scope=Scope(names=tuple(layers)))
    return floors_from_scan(scan.to_dict(), max_drop), scan.to_dict()


def floors_from_scan(scan: dict, max_drop: float) -> dict[str, float]:
    """``density_floors`` on a scan already made (``SensitivityScan.to_dict()``)."""
    floor_acc = scan["dense"] - max_drop / 100.0
    out = {}
    for name, d in scan["layers"].items():
        prev_s, prev_v = 0.0, scan["dense"]
        cut = scan["sparsities"][-1]
        for s_, v in zip(scan["sparsities"], d["values"]):
            if v < floor_acc:
                cut = prev_s + (s_ - prev_s) * (prev_v - floor_acc) / max(prev_v - v, 1e-12)
                break
            prev_s, prev_v = s_, v
        out[name] = round(1.0 - cut, 6)
    return out
