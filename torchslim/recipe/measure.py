"""Measuring a model the way ``torchslim profile`` does: accuracy on the test
split, params / nonzero params / MACs from ``analysis.profile``, latency from
``analysis.latency`` (median, stated thread count), and size as the bytes of
an artifact file on disk.

A sentence encoder measured on sentences (no labels: ``TextDataset``) has no
accuracy: its ``fidelity`` to the reference model (the recipe's baseline) is
measured instead (mean/min cosine of the embeddings, nearest-neighbour
agreement; ``analysis.fidelity``), and ``accuracy`` is null."""
from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["measure_model", "compare_models_latency"]


def is_text_data(data) -> bool:
    return hasattr(data, "input_batches") and getattr(data, "attention_mask", None) is not None


def measure_model(model: torch.nn.Module, *, test_data, example_inputs: tuple, artifact: str | Path | None,
                  settings, latency: bool | None = None, holdout_data=None,
                  reference: torch.nn.Module | None = None) -> dict:
    """Metrics of ``model`` (evaluated as given). ``settings`` is the recipe's
    MeasureSpec. ``size_bytes`` is the size of ``artifact`` (None without one).
    With ``holdout_data`` (the recipe's selection split of train), also
    ``holdout_accuracy``: the number to choose settings by, never the test one."""
    from ..analysis.evaluate import evaluate
    from ..analysis.profile import profile

    model.eval()
    fid = None
    if is_text_data(test_data):
        from ..analysis.fidelity import embedding_fidelity

        fid = embedding_fidelity(reference if reference is not None else model, model, test_data)
        ev = {"accuracy": None, "error": None, "n": fid["n"]}
    else:
        ev = evaluate(model, test_data, batch_size=settings.eval_batch_size)
    prof = profile(model, example_inputs)
    out = {
        "accuracy": ev["accuracy"],
        "error": ev["error"],
        "test_examples": ev["n"],
        "params": int(prof.params),
        "nonzero_params": int(prof.nonzero_params),
        "macs": int(prof.macs),
        "fp32_bytes": int(prof.fp32_bytes),
        "size_bytes": Path(artifact).stat().st_size if artifact is not None else None,
        "latency_ms": None,
    }
    if fid is not None:
        out["fidelity"] = fid
    if holdout_data is not None and is_text_data(holdout_data):
        from ..analysis.fidelity import embedding_fidelity

        out["holdout_fidelity"] = embedding_fidelity(reference if reference is not None else model, model,
                                                     holdout_data)
    elif holdout_data is not None:
        out["holdout_accuracy"] = evaluate(model, holdout_data, batch_size=settings.eval_batch_size)["accuracy"]
    if settings.latency if latency is None else latency:
        from ..analysis.latency import latency as measure_latency

        lat = measure_latency(model, example_inputs, warmup=settings.warmup, repeats=settings.repeats,
                              threads=settings.threads)
        out["latency_ms"] = float(lat["median_ms"])
        out["latency_p90_ms"] = float(lat.get("p90_ms", lat["median_ms"]))
        out["latency_threads"] = settings.threads
        out["latency_batch"] = settings.latency_batch
    return out


def compare_models_latency(baseline: torch.nn.Module, final: torch.nn.Module, example_inputs: tuple, settings) -> dict:
    """Baseline and final timed alternately in one process (the machine's
    speed drifts within minutes): medians of each and of the per-pair ratios."""
    from ..analysis.latency import compare_latency

    baseline.eval()
    final.eval()
    return dict(compare_latency(baseline, final, example_inputs, threads=settings.threads, repeats=settings.repeats))
