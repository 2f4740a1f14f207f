"""Robustness of a compressed model against its original: accuracy under
corrupted inputs, agreement, calibration, per-class cost, per-layer cost.

    >>> from torchslim.analysis.robustness import compare
    >>> r = compare(dense, compressed, ("mnist", "test"))
    >>> r["corruptions"]["gaussian_noise"]["compressed"]      # accuracy at severities 1..5
    >>> r["calibration"]["compressed"]["ece"], r["per_class"][0]   # the class that pays most

**Classifiers** (inputs a float tensor, outputs logits). Every corruption
``corrupt(x, kind, severity)`` works in the data's input domain ``[lo, hi]``
(``[0, 1]`` for the zoo data: see ``domain`` below) and clips back into it;
severity 0 returns ``x`` itself, severities are usually 1..5 and any
non-negative number works (the strength grows linearly; ``CORRUPTIONS``
gives each one's unit). The noise is drawn from a generator seeded by
``(seed, kind, severity)``, so a corrupted set is the same on every call and
the same for both models. Inputs are images ``(N, C, H, W)``; a flat
``(N, D)`` input whose ``D`` is a square (LeNet-300-100's 784 = 28 x 28) is
corrupted as a one-channel ``sqrt(D) x sqrt(D)`` image and flattened back;
other inputs (``(N, C, L)`` signals such as MNIST-1D, non-square vectors) are
1-D signals: blur and translation act along the last axis and rotation is
skipped (listed under ``"skipped"``).

* accuracy of each model at every corruption and severity;
* agreement: the fraction of inputs on which the two models' top-1 classes
  match, clean and under each corruption;
* expected calibration error (ECE, 15 equal-width bins of the top-1
  softmax confidence, a bin being ``(lower, upper]``; Guo et al. 2017) with
  the reliability-diagram bins;
* per-class accuracy drop (original minus compressed, in accuracy points,
  largest first);
* per-layer sensitivity, ``sensitivity="restore"``: the accuracy of the
  compressed model when one layer alone gets the original's weights back
  (every direct parameter and buffer of the layer; only where the layer
  exists in both models with the same shapes, others are listed with the
  reason), i.e. how much of the gap that layer's compression costs. A gain
  can be negative: the other layers were fine-tuned around the compressed
  one. ``sensitivity="scan"`` runs ``scan_fn`` (``prune.sensitivity.sensitivity_scan``) on the
  original instead (accuracy when one layer alone is magnitude-pruned), which
  also works when compression changed the layers' shapes; ``"both"`` does
  both.

**Sentence encoders** (inputs ``(input_ids, attention_mask)``, outputs one
embedding per sentence; data a ``TextDataset`` or an ``(ids, mask)`` pair).
The corruptions are ``token_dropout`` (content tokens removed, the rest
closed up) and ``token_swap`` (adjacent content tokens exchanged), at a rate
of ``0.08 x severity`` (``[CLS]``, the last real token ``[SEP]`` and padding
are never touched). Per model: ``retrieval``, the fraction of corrupted
sentences whose nearest clean sentence (cosine, same model) is their own
clean version, and ``stability``, the mean cosine between a sentence's
corrupted and clean embeddings. Agreement between the models: mean cosine
and nearest-neighbour agreement of their embeddings of the same (corrupted)
sentences, from ``analysis.fidelity`` (``fidelity``, ``embed``). Sentences are
embedded in batches of similar length, each cut after its last real token.
"""
from __future__ import annotations

import copy
import math
import zlib
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import ConfigError

__all__ = ["CORRUPTIONS", "TEXT_CORRUPTIONS", "DEFAULT_SEVERITIES", "corrupt", "corrupt_tokens",
           "expected_calibration_error", "reliability", "agreement", "per_class_drop", "layer_sensitivity",
           "robustness", "compare"]

DEFAULT_SEVERITIES = (1, 2, 3, 4, 5)
ECE_BINS = 15

# kind -> (unit per severity step, what the unit means). "range" is hi - lo of the domain,
# "side" the image side (or signal length) in pixels.
CORRUPTIONS: dict[str, tuple[float, str]] = {
    "gaussian_noise": (0.08, "noise standard deviation, fraction of the range"),
    "impulse_noise": (0.03, "fraction of values set to lo or hi (salt and pepper)"),
    "contrast": (0.15, "contrast reduction: x -> mean + (1 - u*s)(x - mean), per example"),
    "brightness": (0.10, "shift toward hi, fraction of the range"),
    "gaussian_blur": (0.015, "blur standard deviation, fraction of the side"),
    "translate": (0.035, "shift in a random direction, fraction of the side"),
    "rotate": (6.0, "rotation in degrees, random sign"),
}
TEXT_CORRUPTIONS: dict[str, tuple[float, str]] = {
    "token_dropout": (0.08, "fraction of content tokens removed"),
    "token_swap": (0.08, "fraction of content tokens swapped with the next one"),
}
_SPATIAL_2D = ("rotate",)


# ---------------------------------------------------------------- corruptions

def _generator(seed: int, kind: str, severity: float) -> torch.Generator:
    key = zlib.crc32(f"{int(seed)}:{kind}:{float(severity)!r}".encode())
    return torch.Generator().manual_seed(key)


def _check_severity(severity) -> float:
    s = float(severity)
    if not math.isfinite(s) or s < 0:
        raise ConfigError(f"severity must be a finite number >= 0 (0 = clean, usually 1..5), got {severity!r}")
    return s


def _layout(shape: tuple) -> tuple[tuple, bool]:
    """(N, C, H, W) to view the input as, and whether it is a 1-D signal (H == 1)."""
    if len(shape) == 4:
        return tuple(shape), False
    if len(shape) == 2:
        side = math.isqrt(shape[1])
        if side > 1 and side * side == shape[1]:
            return (shape[0], 1, side, side), False
        return (shape[0], 1, 1, shape[1]), True
    if len(shape) == 3:
        return (shape[0], shape[1], 1, shape[2]), True
    raise ConfigError(f"corrupt: inputs of shape {tuple(shape)}; need (N, C, H, W) images, (N, D) vectors or "
                      "(N, C, L) signals")


def _gaussian_blur(x: torch.Tensor, sigma: float, one_d: bool) -> torch.Tensor:
    if sigma <= 0:
        return x
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    out = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, radius), groups=c)
    if not one_d:
        out = F.conv2d(out, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(radius, 0), groups=c)
    return out


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def corrupt(x: torch.Tensor, kind: str, severity: float, *, seed: int = 0,
            domain: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """``x`` corrupted by ``kind`` (a key of ``CORRUPTIONS``) at ``severity``
    (0 returns ``x`` unchanged), clipped into ``domain = (lo, hi)``.
    Deterministic for a given ``(seed, kind, severity)`` and input shape."""
    if kind not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption {kind!r}; use one of {sorted(CORRUPTIONS)}")
    s = _check_severity(severity)
    if s == 0:
        return x
    lo, hi = float(domain[0]), float(domain[1])
    if not hi > lo:
        raise ConfigError(f"domain must be (lo, hi) with hi > lo, got {domain!r}")
    shape, one_d = _layout(tuple(x.shape))
    if one_d and kind in _SPATIAL_2D:
        raise ConfigError(f"corruption {kind!r} needs 2-D images; inputs of shape {tuple(x.shape)} are 1-D signals")
    unit = CORRUPTIONS[kind][0]
    g = _generator(seed, kind, s)
    rng = hi - lo
    v = x.detach().float().reshape(shape) - lo  # background at 0, so zero padding is "lo"
    n, side = shape[0], shape[3] if one_d else min(shape[2], shape[3])
    if kind == "gaussian_noise":
        v = v + torch.randn(v.shape, generator=g) * (unit * s * rng)
    elif kind == "impulse_noise":
        hit = torch.rand(v.shape, generator=g) < min(1.0, unit * s)
        salt = torch.rand(v.shape, generator=g) < 0.5
        v = torch.where(hit, torch.where(salt, torch.full_like(v, rng), torch.zeros_like(v)), v)
    elif kind == "contrast":
        mean = v.mean(dim=(1, 2, 3), keepdim=True)
        v = mean + max(0.0, 1.0 - unit * s) * (v - mean)
    elif kind == "brightness":
        v = v + unit * s * rng
    elif kind == "gaussian_blur":
        v = _gaussian_blur(v, unit * s * side, one_d)
    elif kind == "translate":
        dist = unit * s * side  # pixels
        if one_d:
            sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
            dx, dy = sign * dist, torch.zeros(n)
        else:
            angle = torch.rand(n, generator=g) * (2 * math.pi)
            dx, dy = torch.cos(angle) * dist, torch.sin(angle) * dist
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, 0, 2] = -2.0 * dx / shape[3]  # the grid says where each output pixel samples from
        theta[:, 1, 2] = -2.0 * dy / shape[2]
        v = _warp(v, theta)
    elif kind == "rotate":
        sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        a = sign * math.radians(unit * s)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), -torch.sin(a)
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a), torch.cos(a)
        v = _warp(v, theta)
    return (v.clamp(0.0, rng) + lo).reshape(x.shape).to(x.dtype)


def corrupt_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, kind: str, severity: float, *,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` with ``kind`` (a key of
    ``TEXT_CORRUPTIONS``) applied at ``severity`` (0 returns the inputs). Row
    by row, the first token and the last real one (``[CLS]``, ``[SEP]``) and
    the padding are kept; dropped tokens close up and the row is padded with
    its own padding id (0 if the row had none)."""
    if kind not in TEXT_CORRUPTIONS:
        raise ConfigError(f"unknown text corruption {kind!r}; use one of {sorted(TEXT_CORRUPTIONS)}")
    s = _check_severity(severity)
    if s == 0:
        return input_ids, attention_mask
    if input_ids.shape != attention_mask.shape or input_ids.ndim != 2:
        raise ConfigError(f"corrupt_tokens: input_ids {tuple(input_ids.shape)} and attention_mask "
                          f"{tuple(attention_mask.shape)} must be equal (batch, seq) tensors")
    rate = min(1.0, TEXT_CORRUPTIONS[kind][0] * s)
    g = _generator(seed, kind, s)
    ids, mask = input_ids.clone(), attention_mask.clone()
    draws = torch.rand(ids.shape, generator=g)
    for r in range(ids.shape[0]):
        real = torch.nonzero(mask[r]).flatten().tolist()
        content = real[1:-1]
        if not content:
            continue
        if kind == "token_dropout":
            keep = [real[0]] + [p for p in content if draws[r, p] >= rate] + [real[-1]]
            pad_pos = torch.nonzero(mask[r] == 0).flatten()
            pad_id = int(input_ids[r, pad_pos[0]]) if len(pad_pos) else 0
            row = input_ids[r, keep]
            ids[r] = pad_id
            mask[r] = 0
            ids[r, : len(keep)] = row
            mask[r, : len(keep)] = 1
        else:  # token_swap: left to right, a swapped pair is not swapped again
            i = 0
            while i < len(content) - 1:
                if draws[r, content[i]] < rate:
                    a, b = content[i], content[i + 1]
                    ids[r, a], ids[r, b] = ids[r, b].clone(), ids[r, a].clone()
                    i += 2
                else:
                    i += 1
    return ids, mask


# ---------------------------------------------------------------- metrics

def reliability(logits: torch.Tensor, labels: torch.Tensor, *, bins: int = ECE_BINS) -> dict:
    """Reliability-diagram bins of the top-1 softmax confidence: ``bins``
    equal-width bins ``(lower, upper]`` of [0, 1] with their count, mean
    confidence and accuracy (None when empty), and ``ece``: the
    count-weighted mean of ``|accuracy - confidence|`` over the bins."""
    if bins < 1:
        raise ConfigError(f"bins must be >= 1, got {bins}")
    probs = torch.softmax(torch.as_tensor(logits).double(), dim=1)
    conf, pred = probs.max(1)
    correct = (pred == torch.as_tensor(labels).long()).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    n = len(conf)
    out = {"edges": edges.tolist(), "count": [], "confidence": [], "accuracy": []}
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        k = int(inside.sum())
        out["count"].append(k)
        if k == 0:
            out["confidence"].append(None)
            out["accuracy"].append(None)
            continue
        c, a = float(conf[inside].mean()), float(correct[inside].mean())
        out["confidence"].append(c)
        out["accuracy"].append(a)
        ece += k / n * abs(a - c)
    out["ece"] = ece if n else 0.0
    return out


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, *, bins: int = ECE_BINS) -> float:
    """ECE of ``logits`` (softmax is applied) against integer ``labels``, see ``reliability``."""
    return reliability(logits, labels, bins=bins)["ece"]


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of rows on which the top-1 classes of logits ``a`` and ``b`` match."""
    if a.shape[0] != b.shape[0]:
        raise ConfigError(f"agreement: {a.shape[0]} rows against {b.shape[0]}; give logits of the same inputs")
    return int((a.argmax(1) == b.argmax(1)).sum()) / len(a) if len(a) else 1.0


def per_class_drop(labels: torch.Tensor, original_pred: torch.Tensor, compressed_pred: torch.Tensor, *,
                   num_classes: int | None = None) -> list[dict]:
    """Per class present in ``labels``: ``{"class", "n", "original",
    "compressed", "drop"}`` (accuracies; drop = original - compressed), the
    largest drop first (ties: lower class first)."""
    labels = torch.as_tensor(labels).long()
    k = num_classes if num_classes is not None else (int(labels.max()) + 1 if len(labels) else 0)
    rows = []
    for c in range(k):
        sel = labels == c
        n = int(sel.sum())
        if n == 0:
            continue
        a = int((original_pred[sel] == c).sum()) / n
        b = int((compressed_pred[sel] == c).sum()) / n
        rows.append({"class": c, "n": n, "original": a, "compressed": b, "drop": a - b})
    return sorted(rows, key=lambda r: (-r["drop"], r["class"]))


def _accuracy(model: Callable, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    return _acc(_logits(model, x, batch_size), y)


def _logits(model: Callable, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    from ..zoo.data import ArrayDataset
    from .evaluate import predict_logits

    return predict_logits(model, ArrayDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=batch_size)


def _restore_layer(work: torch.nn.Module, name: str, source: torch.nn.Module) -> str | None:
    """Copy ``source``'s direct parameters and buffers into ``work``'s module
    ``name``; the reason it cannot, or None. A pruning mask (``weight_orig``
    + ``weight_mask``) gets the original weight and an all-ones mask."""
    target = work.get_submodule(name)
    src = dict(source.named_parameters(recurse=False)) | dict(source.named_buffers(recurse=False))
    dst = dict(target.named_parameters(recurse=False)) | dict(target.named_buffers(recurse=False))
    plan = []
    for key, t in dst.items():
        if key.endswith("_mask") and key[:-5] in src:
            plan.append((t, torch.ones_like(t)))
            continue
        s = src.get(key[:-5] if key.endswith("_orig") else key)
        if s is None:
            return f"{key} has no counterpart in the original"
        if s.shape != t.shape:
            return f"{key} is {tuple(t.shape)} here, {tuple(s.shape)} in the original"
        plan.append((t, s))
    with torch.no_grad():
        for t, s in plan:
            t.copy_(s.to(t.dtype))
    return None


def layer_sensitivity(original: torch.nn.Module, compressed: torch.nn.Module, data, *, batch_size: int = 1000,
                      method: str = "restore", sparsities: Sequence[float] = (0.5, 0.8, 0.9, 0.95),
                      scan_fn=None) -> dict:
    """Per layer, what its compression costs (see the module doc).

    ``method="restore"``: for each layer of ``compressed`` with direct
    parameters, the accuracy on ``data`` when that layer alone is given the
    original's weights, ``gain`` over the compressed model and
    ``recovered`` (gain / accuracy gap, when there is a gap); layers whose
    shapes differ are listed with ``status``. ``method="scan"``:
    ``scan_fn(original, data, sparsities=...)`` of ``original`` at
    ``sparsities``, i.e. ``torchslim.prune.sensitivity.sensitivity_scan``
    (passed in: measuring does not depend on the pruning layer); use
    calibration data for it when the result chooses anything."""
    x, y = _xy(data)
    label = f"{getattr(data, 'name', '')}/{getattr(data, 'split', '')}".strip("/") or f"{len(y)} examples"
    if method == "scan":
        from ..zoo.data import ArrayDataset

        if scan_fn is None:
            raise ConfigError("layer_sensitivity(method='scan') needs scan_fn="
                              "torchslim.prune.sensitivity.sensitivity_scan")
        scan = scan_fn(original, ArrayDataset(x, y), sparsities=sparsities)
        layers = [{"layer": k, "params": v["params"], "values": v["values"]} for k, v in scan.layers.items()]
        return {"method": "scan", "data": label, "metric": scan.metric, "sparsities": scan.sparsities,
                "dense": scan.dense, "layers": layers}
    if method != "restore":
        raise ConfigError(f"method must be 'restore' or 'scan', got {method!r}")
    for m, arg in ((original, "original"), (compressed, "compressed")):
        if not isinstance(m, torch.nn.Module):
            raise ConfigError(f"layer_sensitivity: {arg} is a {type(m).__name__}; restoring layers needs two "
                              "nn.Modules (measure an ONNX model with sensitivity=None)")
    base = _accuracy(compressed, x, y, batch_size)
    top = _accuracy(original, x, y, batch_size)
    gap = top - base
    originals = dict(original.named_modules())
    layers = []
    for name, mod in compressed.named_modules():
        if not name or not any(True for _ in mod.parameters(recurse=False)):
            continue
        row = {"layer": name, "type": type(mod).__name__, "accuracy": None, "gain": None, "recovered": None}
        src = originals.get(name)
        if src is None:
            row["status"] = "no layer of this name in the original"
        else:
            work = copy.deepcopy(compressed)
            reason = _restore_layer(work, name, src)
            if reason:
                row["status"] = f"shape differs: {reason}"
            else:
                acc = _accuracy(work, x, y, batch_size)
                row.update(status="restored", accuracy=acc, gain=acc - base,
                           recovered=(acc - base) / gap if gap > 0 else None)
        layers.append(row)
    return {"method": "restore", "data": label, "original": top, "compressed": base, "layers": layers}


# ---------------------------------------------------------------- data and runs

def _load(data):
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], str):
        from ..zoo.data import load_dataset

        return load_dataset(*data)
    return data


def _is_text(data) -> bool:
    if getattr(data, "attention_mask", None) is not None:
        return True
    return (isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)
            and data[0].ndim == 2 and data[0].shape == data[1].shape and not data[0].is_floating_point()
            and not data[1].is_floating_point())


def _xy(data) -> tuple[torch.Tensor, torch.Tensor]:
    data = _load(data)
    if hasattr(data, "x") and hasattr(data, "y") and isinstance(data.x, torch.Tensor):
        return data.x, torch.as_tensor(data.y).long()
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return data[0], data[1].long()
    raise ConfigError(f"data is a {type(data).__name__}; give an ArrayDataset, an (x, y) pair of tensors or a "
                      "(name, split) pair such as ('mnist', 'test') (a streaming set: take a slice first, "
                      "e.g. data.take(10000))")


def _tokens(data) -> tuple[torch.Tensor, torch.Tensor]:
    if getattr(data, "attention_mask", None) is not None:
        return data.x.long(), data.attention_mask.long()
    return data[0].long(), data[1].long()


def _domain(x: torch.Tensor, domain) -> tuple[float, float]:
    if domain is not None:
        lo, hi = float(domain[0]), float(domain[1])
        if not hi > lo:
            raise ConfigError(f"domain must be (lo, hi) with hi > lo, got {domain!r}")
        return lo, hi
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    return lo, hi


def _kinds(corruptions, table: dict) -> list[str]:
    kinds = list(table) if corruptions is None else list(corruptions)
    bad = [k for k in kinds if k not in table]
    if bad:
        raise ConfigError(f"corruptions: unknown {bad}; use a subset of {sorted(table)}")
    return kinds


def _severities(severities) -> list[float]:
    sev = [_check_severity(s) for s in severities]
    if not sev or sev != sorted(set(sev)):
        raise ConfigError(f"severities must be increasing numbers >= 0, e.g. (1, 2, 3, 4, 5), got {severities!r}")
    return [s for s in sev if s > 0]


def _num(s: float) -> float | int:
    return int(s) if float(s).is_integer() else s


def _classifier_run(models: dict[str, Callable], data, *, corruptions, severities, seed, batch_size, domain,
                    limit) -> dict:
    """Logits of every model, clean and at each (corruption, severity)."""
    x, y = _xy(data)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if not x.is_floating_point():
        raise ConfigError(f"inputs are {x.dtype}; classifier corruptions need float inputs (for token ids give "
                          "a TextDataset or an (input_ids, attention_mask) pair)")
    lo, hi = _domain(x, domain)
    kinds, sev = _kinds(corruptions, CORRUPTIONS), _severities(severities)
    one_d = _layout(tuple(x.shape))[1]
    skipped = {k: "needs 2-D images" for k in kinds if one_d and k in _SPATIAL_2D}
    clean = {m: _logits(f, x, batch_size) for m, f in models.items()}
    runs = {}
    for k in kinds:
        if k in skipped:
            continue
        for s in sev:
            xc = corrupt(x, k, s, seed=seed, domain=(lo, hi))
            runs[(k, s)] = {m: _logits(f, xc, batch_size) for m, f in models.items()}
    layout = "x".join(str(d) for d in x.shape[1:])
    return {"x": x, "y": y, "domain": (lo, hi), "kinds": [k for k in kinds if k not in skipped], "severities": sev,
            "skipped": skipped, "clean": clean, "runs": runs, "layout": layout}


def _acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    return int((logits.argmax(1) == y).sum()) / len(y) if len(y) else 0.0


def _header(run: dict, seed: int) -> dict:
    return {"task": "classifier", "n": int(len(run["y"])), "input": run["layout"], "seed": seed,
            "domain": list(run["domain"]), "severities": [_num(s) for s in run["severities"]],
            "corruption_units": {k: {"unit": CORRUPTIONS[k][0], "meaning": CORRUPTIONS[k][1]} for k in run["kinds"]},
            "skipped": run["skipped"]}


def _per_class(y: torch.Tensor, pred: torch.Tensor) -> list[dict]:
    rows = []
    for c in range(int(y.max()) + 1 if len(y) else 0):
        sel = y == c
        if int(sel.sum()):
            rows.append({"class": c, "n": int(sel.sum()), "accuracy": int((pred[sel] == c).sum()) / int(sel.sum())})
    return rows


def robustness(model: Callable, data, *, corruptions: Sequence[str] | None = None,
               severities: Sequence[float] = DEFAULT_SEVERITIES, seed: int = 0, batch_size: int = 1000,
               domain: tuple[float, float] | None = None, limit: int | None = None) -> dict:
    """Robustness of one model on ``data`` (the module doc lists the data
    forms, corruptions and metrics). ``domain``: the inputs' valid range
    (default: ``(0, 1)`` when the data lies inside it, else the data's min and
    max); ``limit``: use the first ``limit`` examples only."""
    data = _load(data)
    if _is_text(data):
        return _text_run({"model": model}, data, corruptions=corruptions, severities=severities, seed=seed,
                         batch_size=batch_size, limit=limit, compare=False)
    run = _classifier_run({"model": model}, data, corruptions=corruptions, severities=severities, seed=seed,
                          batch_size=batch_size, domain=domain, limit=limit)
    y, clean = run["y"], run["clean"]["model"]
    out = _header(run, seed)
    out["clean"] = {"accuracy": _acc(clean, y)}
    out["corruptions"] = {k: {"accuracy": [_acc(run["runs"][(k, s)]["model"], y) for s in run["severities"]]}
                          for k in run["kinds"]}
    cal = reliability(clean, y)
    out["clean"]["ece"] = cal["ece"]
    out["calibration"] = cal
    out["per_class"] = _per_class(y, clean.argmax(1))
    return out


def compare(original: Callable, compressed: Callable, data, *, corruptions: Sequence[str] | None = None,
            severities: Sequence[float] = DEFAULT_SEVERITIES, seed: int = 0, batch_size: int = 1000,
            domain: tuple[float, float] | None = None, limit: int | None = None,
            sensitivity: str | None = "restore", sensitivity_data=None, scan_fn=None) -> dict:
    """Robustness of ``compressed`` against ``original`` on ``data`` (see the
    module doc). ``sensitivity``: ``"restore"``, ``"scan"``, ``"both"`` or
    None (per-layer sensitivity, classifiers that are nn.Modules only),
    measured on ``sensitivity_data`` (default ``data``). Other options as in
    ``robustness``. Returns a JSON-ready dict."""
    if sensitivity not in (None, "restore", "scan", "both"):
        raise ConfigError(f"sensitivity must be 'restore', 'scan', 'both' or None, got {sensitivity!r}")
    data = _load(data)
    if _is_text(data):
        return _text_run({"original": original, "compressed": compressed}, data, corruptions=corruptions,
                         severities=severities, seed=seed, batch_size=batch_size, limit=limit, compare=True)
    run = _classifier_run({"original": original, "compressed": compressed}, data, corruptions=corruptions,
                          severities=severities, seed=seed, batch_size=batch_size, domain=domain, limit=limit)
    y, clean, sev = run["y"], run["clean"], run["severities"]
    out = _header(run, seed)
    out["clean"] = {"original": _acc(clean["original"], y), "compressed": _acc(clean["compressed"], y),
                    "agreement": agreement(clean["original"], clean["compressed"])}
    out["corruptions"] = {}
    for k in run["kinds"]:
        r = [run["runs"][(k, s)] for s in sev]
        out["corruptions"][k] = {"original": [_acc(p["original"], y) for p in r],
                                 "compressed": [_acc(p["compressed"], y) for p in r],
                                 "agreement": [agreement(p["original"], p["compressed"]) for p in r]}
    cells = [(m, v) for c in out["corruptions"].values() for m in ("original", "compressed", "agreement") for v in c[m]]
    out["mean_corrupted"] = {m: float(np.mean([v for mm, v in cells if mm == m])) if cells else None
                             for m in ("original", "compressed", "agreement")}
    out["calibration"] = {m: reliability(clean[m], y) for m in ("original", "compressed")}
    out["per_class"] = per_class_drop(y, clean["original"].argmax(1), clean["compressed"].argmax(1))
    if sensitivity is not None:
        sdata = _load(sensitivity_data) if sensitivity_data is not None else (run["x"], y)
        modules = isinstance(original, torch.nn.Module) and isinstance(compressed, torch.nn.Module)
        if not modules:
            out["sensitivity"] = {"skipped": "per-layer sensitivity needs two nn.Modules"}
        else:
            methods = ("restore", "scan") if sensitivity == "both" else (sensitivity,)
            out["sensitivity"] = {m: layer_sensitivity(original, compressed, sdata, batch_size=batch_size, method=m,
                                                          scan_fn=scan_fn)
                                  for m in methods}
    return out


# ---------------------------------------------------------------- sentence encoders

def _retrieval(corrupted: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    """(fraction whose nearest clean embedding is their own, mean cosine to their own)."""
    a, b = F.normalize(corrupted.float(), dim=1), F.normalize(clean.float(), dim=1)
    hit = ((a @ b.T).argmax(1) == torch.arange(len(a))).float().mean()
    return float(hit), float((a * b).sum(1).mean())


def _embed(model: Callable, ids: torch.Tensor, mask: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``fidelity.embed`` in batches of similar length, each cut after its last real token (rows in input order)."""
    from .fidelity import embed

    last = (mask * torch.arange(1, mask.shape[1] + 1)).amax(1)  # 1 + position of each row's last real token
    order = torch.argsort(last, stable=True)
    batches = []
    for i in range(0, len(order), batch_size):
        idx = order[i: i + batch_size]
        width = max(1, int(last[idx].max()))
        batches.append((ids[idx, :width], mask[idx, :width]))
    out = embed(model, batches)
    result = torch.empty_like(out)
    result[order] = out
    return result


def _text_run(models: dict[str, Callable], data, *, corruptions, severities, seed, batch_size, limit,
              compare: bool) -> dict:
    from .fidelity import fidelity

    ids, mask = _tokens(data)
    if limit is not None:
        ids, mask = ids[:limit], mask[:limit]
    kinds, sev = _kinds(corruptions, TEXT_CORRUPTIONS), _severities(severities)
    bs = min(batch_size, 64)
    clean = {m: _embed(f, ids, mask, bs) for m, f in models.items()}
    out = {"task": "text", "n": int(len(ids)), "seed": seed, "severities": [_num(s) for s in sev],
           "corruption_units": {k: {"unit": TEXT_CORRUPTIONS[k][0], "meaning": TEXT_CORRUPTIONS[k][1]}
                                for k in kinds}, "skipped": {}}
    out["clean"] = {m: dict(zip(("retrieval", "stability"), _retrieval(clean[m], clean[m]))) for m in models}
    if compare:
        f = fidelity(clean["compressed"], clean["original"])
        out["clean"]["agreement"] = {"nn_agreement": f["nn_agreement"], "mean_cosine": f["mean_cosine"]}
    out["corruptions"] = {}
    for k in kinds:
        row: dict = {m: {"retrieval": [], "stability": []} for m in models}
        if compare:
            row["agreement"] = {"nn_agreement": [], "mean_cosine": []}
        for s in sev:
            cids, cmask = corrupt_tokens(ids, mask, k, s, seed=seed)
            emb = {m: _embed(f, cids, cmask, bs) for m, f in models.items()}
            for m in models:
                hit, cos = _retrieval(emb[m], clean[m])
                row[m]["retrieval"].append(hit)
                row[m]["stability"].append(cos)
            if compare:
                f = fidelity(emb["compressed"], emb["original"])
                row["agreement"]["nn_agreement"].append(f["nn_agreement"])
                row["agreement"]["mean_cosine"].append(f["mean_cosine"])
        out["corruptions"][k] = row
    return out
