"""One trial: a generated recipe run in its own folder (``DIR/trials/NNNN``,
numbered by the trial it first was, so a rerun after a crash resumes it),
then measured: the recipe's report.json (accuracy on the holdout and test
splits, bytes of the artifact on disk, params, MACs) plus, when latency
matters, the artifact's paired latency against the baseline on the target
runtime. ``auto.json`` in the folder records parameters, metrics, objective
values and constraint violations."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from pathlib import Path
from typing import Any, Iterator

__all__: list[str] = []  # internal: import from the module

TRIALS_DIR = "trials"
RECORD = "auto.json"


def trial_dir(out: Path, number: int) -> Path:
    return Path(out) / TRIALS_DIR / f"{number:04d}"


def trial_recipe(*, stages: list[dict], distill: dict | None, base_artifact: Path, data, seed: int,
                 torch_latency: bool, name: str) -> dict:
    """The recipe of one trial: the baseline artifact, the search's data and
    seed, distillation from the baseline when asked, the generated stages."""
    recipe: dict[str, Any] = {"name": name, "model": {"artifact": str(Path(base_artifact).resolve())},
                              "data": data.to_dict(), "seed": seed,
                              "measure": {"latency": bool(torch_latency)}, "stages": stages}
    if distill is not None:
        recipe["teacher"] = "baseline"
        recipe["distill"] = distill
    return recipe


def recipe_hash(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """One process at a time in a trial folder."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_record(folder: Path, rhash: str) -> dict | None:
    """The folder's finished measurement, if it belongs to this recipe."""
    try:
        rec = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return rec if rec.get("recipe_hash") == rhash and rec.get("metrics") else None


def write_record(folder: Path, rec: dict) -> None:
    from ..artifact import atomic_write_bytes

    atomic_write_bytes(folder / RECORD, json.dumps(rec, indent=2, default=str).encode())


def run_trial_recipe(recipe: dict, folder: Path, *, html: bool) -> dict:
    """Run (or resume) the trial's recipe; its report."""
    from ..recipe import run_recipe

    return run_recipe(recipe, folder, progress=False, html=html)


def measure_trial(report: dict, folder: Path, *, baseline: dict, latency_spec=None, dataset: str | None = None
                  ) -> dict:
    """The trial's metrics: the recipe report's (holdout and test accuracy,
    bytes, params, MACs) and the paired latency of its artifact against the
    baseline (the artifact is also exported to ``model.onnx`` beside it)."""
    final = report["final"]
    hold = final.get("holdout_accuracy")
    metrics = {
        "holdout_accuracy": hold, "accuracy": final.get("accuracy"),
        "baseline_holdout_accuracy": baseline["holdout_accuracy"],
        "drop_points": None if hold is None else 100.0 * (baseline["holdout_accuracy"] - hold),
        "size_bytes": final.get("size_bytes"), "params": final.get("params"),
        "nonzero_params": final.get("nonzero_params"), "macs": final.get("macs"),
        "compression_ratio": (baseline["fp32_bytes"] / final["size_bytes"]) if final.get("size_bytes") else None,
        "artifact": report["artifact"],
    }
    if latency_spec is not None:
        from ..artifact import load
        from ..zoo import example_inputs
        from .timing import paired_latency

        base = load(baseline["artifact"]).eval()
        model = load(folder / report["artifact"]).eval()
        inputs = tuple(example_inputs(base, dataset))
        onnx = latency_spec.runtime == "onnxruntime"
        r = paired_latency(base, model, inputs, latency_spec, baseline_onnx=baseline.get("onnx") if onnx else None,
                           model_onnx=folder / "model.onnx" if onnx else None)
        metrics.update({k: r[k] for k in ("speedup", "latency_ms", "baseline_ms", "speedup_p10", "speedup_p90")})
        metrics["latency"] = {k: r[k] for k in ("runtime", "threads", "batch_sizes", "repeats")}
    return metrics
