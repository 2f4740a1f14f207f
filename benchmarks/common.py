"""Shared benchmark helpers: trained baselines (trained once, cached as
artifacts), JSON results, timing. Benchmarks are long runs; they live here,
behind `make bench`, never in the test suite."""
from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path

import torch

from torchslim.artifact import atomic_write_bytes, load, save
from torchslim.train import TrainConfig, fit
from torchslim.zoo import build_model, load_dataset
from torchslim.zoo.data import cache_dir

RESULTS = Path(__file__).resolve().parent / "results"

# One fixed training recipe per baseline, so every benchmark compares against
# the same dense model.
BASELINES: dict[str, dict] = {
    "lenet300": dict(model="lenet300", kwargs={}, train=dict(epochs=30, batch_size=128, lr=1e-3, optimizer="adam", scheduler="cosine", weight_decay=0.0)),
    "lenet5": dict(model="lenet5", kwargs={}, train=dict(epochs=20, batch_size=128, lr=1e-3, optimizer="adam", scheduler="cosine")),
    "resnet8": dict(model="resnet8", kwargs={}, train=dict(epochs=6, batch_size=128, lr=2e-3, optimizer="adam", scheduler="cosine")),
    "mobilenetv2": dict(model="mobilenetv2", kwargs={}, train=dict(epochs=6, batch_size=128, lr=2e-3, optimizer="adam", scheduler="cosine")),
    "vit": dict(model="vit", kwargs={}, train=dict(epochs=10, batch_size=128, lr=1e-3, optimizer="adamw", weight_decay=0.05, scheduler="cosine")),
}


def baseline_path(name: str, dataset: str = "mnist", seed: int = 0) -> Path:
    return cache_dir() / "baselines" / f"{name}-{dataset}-s{seed}.safetensors"


def baseline(name: str, dataset: str = "mnist", seed: int = 0, *, progress: bool = True):
    """The trained dense baseline (model, info dict). Trained on first use and
    cached; a file lock keeps concurrent benchmarks from training it twice."""
    spec = BASELINES[name]
    path = baseline_path(name, dataset, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    info_path = path.with_suffix(".json")
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            torch.manual_seed(seed)
            model = build_model(spec["model"], dataset=dataset, **spec["kwargs"])
            cfg = TrainConfig(seed=seed, **spec["train"])
            out = cache_dir() / "baselines" / f"run-{name}-{dataset}-s{seed}"
            res = fit(model, load_dataset(dataset, "train"), cfg, out_dir=out, progress=progress)
            save(model, path, metadata={"dataset": dataset, "train": cfg.to_dict()})
            atomic_write_bytes(info_path, json.dumps({
                "train_seconds": sum(h["seconds"] for h in res.history),  # all epochs, across resumptions
                "history": res.history, "train": cfg.to_dict()}).encode())
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    return load(path), info


def write_result(name: str, obj: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    p = RESULTS / f"{name}.json"
    atomic_write_bytes(p, json.dumps(obj, indent=2, default=str).encode())
    return p


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
