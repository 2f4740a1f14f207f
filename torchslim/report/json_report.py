"""report.json: the contract of docs/ARCHITECTURE.md. ``baseline`` and ``final`` each
hold ``accuracy`` (0..1), ``params``, ``nonzero_params``, ``macs``,
``size_bytes`` (bytes of an artifact file on disk) and ``latency_ms``; the top
level holds ``artifact`` (relative to the run folder), ``compression_ratio``
(baseline fp32 parameter bytes / final artifact bytes), ``speedup`` (baseline
latency / final latency) and ``stages``."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

__all__ = ["build_report", "write_report", "read_report", "CONTRACT_KEYS"]

CONTRACT_KEYS = ("accuracy", "params", "nonzero_params", "macs", "size_bytes", "latency_ms")


def build_report(*, recipe, baseline: dict, final: dict, artifact: str, stages: list[dict],
                 baseline_layers: dict | None = None, final_layers: dict | None = None,
                 paired_latency: dict | None = None) -> dict:
    fp32 = 4 * int(baseline["params"])
    size = final.get("size_bytes")
    speedup = None
    if baseline.get("latency_ms") and final.get("latency_ms"):
        speedup = float(baseline["latency_ms"]) / float(final["latency_ms"])
    rows = []
    for s in stages:
        rows.append({k: s.get(k) for k in ("index", "name", "kind", "config", "seconds", "artifact", "metrics",
                                           "layers", "histogram", "extras", "in_memory_accuracy", "note")
                     if s.get(k) is not None})
    report = {
        "recipe": recipe.name,
        "model": recipe.model.to_dict(),
        "dataset": recipe.data.dataset,
        "data": recipe.data.to_dict(),
        "baseline": {**baseline, **({"layers": baseline_layers["layers"], "histogram": baseline_layers["histogram"]}
                                    if baseline_layers else {})},
        "final": {**final, **({"layers": final_layers["layers"], "histogram": final_layers["histogram"]}
                              if final_layers else {})},
        "artifact": artifact,
        "baseline_fp32_bytes": fp32,
        "compression_ratio": fp32 / size if size else None,
        "speedup": speedup,
        "speedup_paired_median": (paired_latency or {}).get("ratio_median"),
        "paired_latency": paired_latency,
        "stages": rows,
        "measure": recipe.measure.to_dict(),
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.machine(), "cpus": os.cpu_count(),
                        "latency_threads": recipe.measure.threads,
                        "note": "latency measured on a possibly shared CPU; medians of repeated runs"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return report


def write_report(report: dict, path: str | Path) -> Path:
    from ..artifact import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, json.dumps(report, indent=2, default=str).encode())
    return path


def read_report(path: str | Path) -> dict:
    """A run's report.json (``path`` is the file or the run folder)."""
    from ..core.errors import ConfigError

    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    if not p.is_file():
        raise ConfigError(f"{p}: no report.json here; run `torchslim run RECIPE --out DIR` first")
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        raise ConfigError(f"{p}: not a valid report ({e}); rerun the recipe to rewrite it") from None
