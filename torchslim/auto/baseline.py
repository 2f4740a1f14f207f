"""The search's starting point, prepared once in ``DIR/baseline/``: the model
(trained first by a one-stage recipe when ``train`` is given, so it resumes
like any run), its data splits (the recipe runner's: the holdout is split off
the training data, never the test data) and its measurements."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch.nn as nn

from ..core.errors import ConfigError

__all__: list[str] = []  # internal: import from the module

BASELINE_DIR = "baseline"


def load_splits(data) -> tuple[Any, Any, Any]:
    """(train, holdout, test) of a DataSpec, split exactly as a recipe splits them."""
    from ..zoo.data import load_dataset, split_train

    train = load_dataset(data.dataset, "train")
    test = load_dataset(data.dataset, "test")
    if data.train_limit is not None:
        train = train.take(data.train_limit)
    if data.test_limit is not None:
        test = test.take(data.test_limit)
    if not 0 < data.holdout < len(train):
        raise ConfigError(f"data.holdout must be between 1 and the training split's size ({len(train)}) for a "
                          f"search: accuracy constraints are judged on it; got {data.holdout}")
    train, holdout = split_train(train, data.holdout, seed=data.seed)
    return train, holdout, test


def source_spec(source) -> dict:
    """A JSON description of the model source (to check that every worker and
    every rerun of a search starts from the same model)."""
    if isinstance(source, nn.Module):
        return {"module": type(source).__qualname__, "params": int(sum(p.numel() for p in source.parameters()))}
    from ..recipe.schema import parse_model_spec

    spec = parse_model_spec(source if isinstance(source, (str, dict)) else str(source), "model")
    d = {k: v for k, v in spec.to_dict().items() if v not in (None, {})}
    if "artifact" in d:
        d["artifact"] = str(Path(d["artifact"]).resolve())
    return d


def prepare_baseline(source, *, out: Path, data, train=None, seed: int = 0, progress: bool = False) -> Path:
    """The baseline artifact: ``source`` trained by ``train`` (a TrainConfig)
    in ``DIR/baseline`` (resumable), the artifact ``source`` itself, or
    ``source`` (any other spec or an nn.Module) saved there as it is."""
    from ..artifact import save

    bdir = Path(out) / BASELINE_DIR
    bdir.mkdir(parents=True, exist_ok=True)
    if train is not None:
        from ..recipe import run_recipe

        if isinstance(source, nn.Module):
            start = bdir / "start.safetensors"
            if not start.is_file():
                save(source, start, sparse=False)
            spec: Any = {"artifact": str(start.resolve())}
        else:
            spec = source_spec(source)
        recipe = {"name": "baseline", "model": spec, "data": data.to_dict(), "seed": seed,
                  "measure": {"latency": False},
                  "stages": [{"name": "dense", "kind": "train", **train.to_dict()}]}
        report = run_recipe(recipe, bdir, progress=progress, html=False)
        return bdir / report["artifact"]
    spec = None if isinstance(source, nn.Module) else source_spec(source)
    if spec is not None and "artifact" in spec:
        return Path(spec["artifact"])
    path = bdir / "model.safetensors"
    if not path.is_file():
        from ..zoo.sources import load_model

        model = source if isinstance(source, nn.Module) else load_model(spec, dataset=data.dataset)
        save(model, path, sparse=False)
    return path


def measure_baseline(artifact: Path, *, out: Path, data, splits, latency_spec=None) -> dict:
    """``DIR/baseline/baseline.json``: holdout and test accuracy, params, MACs,
    bytes of the artifact and, with ``latency_spec``, the per-batch latency
    (and its ONNX export, ``DIR/baseline/model.onnx``, every trial is paired
    with). Measured once; read back afterwards."""
    from ..analysis.evaluate import evaluate
    from ..analysis.profile import profile
    from ..artifact import atomic_write_bytes, load
    from ..zoo import example_inputs

    bdir = Path(out) / BASELINE_DIR
    path = bdir / "baseline.json"
    if path.is_file():
        rec = json.loads(path.read_text())
        if rec.get("artifact") == str(Path(artifact).resolve()) and (latency_spec is None or rec.get("latency_ms")):
            return rec
    train, holdout, test = splits
    model = load(artifact).eval()
    inputs = tuple(example_inputs(model, data.dataset))
    prof = profile(model, inputs)
    rec = {"artifact": str(Path(artifact).resolve()), "size_bytes": Path(artifact).stat().st_size,
           "holdout_accuracy": float(evaluate(model, holdout)["accuracy"]),
           "accuracy": float(evaluate(model, test)["accuracy"]), "params": int(prof.params),
           "macs": int(prof.macs), "fp32_bytes": 4 * int(prof.params),
           "holdout_examples": len(holdout), "test_examples": len(test), "input_shape": list(inputs[0].shape[1:])}
    if latency_spec is not None:
        from ..analysis.latency import latency
        from .timing import input_sets, runnable

        sets = input_sets(inputs, latency_spec.batch_sizes)
        onnx = bdir / "model.onnx" if latency_spec.runtime == "onnxruntime" else None
        with runnable(model, latency_spec, sets[0], onnx_path=onnx) as run:
            rec["latency_ms"] = {str(b): float(latency(run, x, warmup=latency_spec.warmup,
                                                       repeats=latency_spec.repeats)["median_ms"])
                                 for b, x in zip(latency_spec.batch_sizes, sets)}
        rec["latency"] = latency_spec.to_dict()
        if onnx is not None:
            rec["onnx"] = str(onnx.resolve())
    atomic_write_bytes(path, json.dumps(rec, indent=2).encode())
    return rec
