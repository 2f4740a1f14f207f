"""Unstructured pruning of LeNet-300-100 on MNIST (Han et al. 2015 keep 8%):
92% of the weights removed by gradual magnitude pruning (AGP, Zhu & Gupta)
from the dense baseline, fine-tuned; test error against the dense
baseline's; the sparse artifact's bytes on disk against the dense one's.

Settings are chosen on a 5,000-example holdout split of the training set
(the candidates below), never on the test split, which is only reported.
The pruning runs through the registered "prune.agp" stage (core.apply),
as a recipe would run it.

Run: .venv/bin/python -m benchmarks.run_all prune_unstructured
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch

from benchmarks.common import Timer, baseline, write_result
from torchslim.analysis.evaluate import evaluate
from torchslim.artifact import load, save
from torchslim.core import Context, apply
from torchslim.prune import AGPConfig, prune_to_sparsity, sparsity_report
from torchslim.train import TrainConfig
from torchslim.zoo import load_dataset, split_train
from torchslim.zoo.data import cache_dir

SPARSITY = 0.92
EPOCHS = 25
# (A first version of this benchmark used 10 epochs with AGP ending at half of the run:
# 1.72% test error against the dense 1.53%; the sparse net needs a longer fine-tune. A second
# version without the distillation candidate chose agp_lr5e-4_end0.3 on the holdout: 1.68%.)
# Caveat: the dense baseline was trained on all 60k training images, holdout included, so
# holdout errors favour candidates that move the weights least; no clean selection split exists.
CANDIDATES = {
    "agp_lr1e-3_end0.3": dict(end=0.3, train=dict(lr=1e-3)),
    "agp_lr5e-4_end0.3": dict(end=0.3, train=dict(lr=5e-4)),
    "agp_lr1e-3_end0.5": dict(end=0.5, train=dict(lr=1e-3)),
    # fine-tuning as a student of the dense model (soft targets, T=4), through ctx.loss_fn
    "agp_lr1e-3_end0.5_kd": dict(end=0.5, train=dict(lr=1e-3), distill=True),
}


def main() -> dict:
    torch.set_num_threads(1)
    dense, info = baseline("lenet300")
    train_all, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    train, holdout = split_train(train_all, 5000, seed=0)
    dense_test = 100 * evaluate(dense, test)["error"]
    print(f"dense LeNet-300-100: test error {dense_test:.2f}%", flush=True)

    one = prune_to_sparsity(copy.deepcopy(dense), SPARSITY)
    oneshot_test = 100 * evaluate(one, test)["error"]

    work = cache_dir() / "bench" / "prune_unstructured"
    runs = {}
    for name, kw in CANDIDATES.items():
        cfg = AGPConfig(sparsity=SPARSITY, start=0.0, end=kw["end"], frequency=100, ranking="global",
                        finetune=TrainConfig(epochs=EPOCHS, batch_size=128, optimizer="adam", scheduler="cosine",
                                             **kw["train"]))
        loss_fn = None
        if kw.get("distill"):
            from torchslim.distill import DistillConfig, make_loss

            loss_fn = make_loss(DistillConfig(temperature=4.0, alpha=0.9), teacher=copy.deepcopy(dense).eval())
        ctx = Context(train_data=train, calib_data=holdout, stage_out=work / name, progress=False, loss_fn=loss_fn)
        with Timer() as t:
            model = apply(copy.deepcopy(dense), cfg, ctx)
        hold = 100 * evaluate(model, holdout)["error"]
        # the test error of every candidate is recorded for the report only; the choice below uses the holdout
        runs[name] = {"config": cfg.to_dict(), "holdout_error_pct": hold, "seconds": t.seconds, "model": model,
                      "test_error_pct": 100 * evaluate(model, test)["error"]}
        print(f"{name}: holdout error {hold:.2f}% ({t.seconds:.0f} s)", flush=True)
    chosen = min(runs, key=lambda n: runs[n]["holdout_error_pct"])
    model = runs[chosen]["model"]
    rep = sparsity_report(model)
    pruned_test = 100 * evaluate(model, test)["error"]

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        dense_bytes = save(dense, d / "dense.safetensors").stat().st_size
        sparse_path = save(model, d / "sparse.safetensors")
        sparse_bytes = sparse_path.stat().st_size
        fp16_path = save(model, d / "sparse-fp16.safetensors", fp16=True)
        fp16_bytes = fp16_path.stat().st_size
        reloaded_test = 100 * evaluate(load(sparse_path), test)["error"]
        fp16_hold = 100 * evaluate(load(fp16_path), holdout)["error"]
        fp16_test = 100 * evaluate(load(fp16_path), test)["error"]

    result = {
        "benchmark": "prune_unstructured", "model": "lenet300", "dataset": "mnist", "threads": 1,
        "dense_test_error_pct": dense_test, "dense_train": info.get("train"),
        "one_shot_no_finetune_test_error_pct": oneshot_test,
        "candidates": {n: {k: v for k, v in r.items() if k != "model"} for n, r in runs.items()},
        "chosen_on_holdout": chosen,
        "weight_sparsity": rep["sparsity"], "layer_sparsity": {k: v["sparsity"] for k, v in rep["layers"].items()},
        "pruned_test_error_pct": pruned_test, "reloaded_artifact_test_error_pct": reloaded_test,
        "error_delta_points": pruned_test - dense_test, "target_delta_points": 0.05,
        "meets_accuracy_target": pruned_test <= dense_test + 0.05,
        "dense_artifact_bytes": dense_bytes, "sparse_artifact_bytes": sparse_bytes,
        "size_ratio": dense_bytes / sparse_bytes, "meets_size_target": dense_bytes / sparse_bytes >= 5,
        "sparse_fp16_artifact_bytes": fp16_bytes, "size_ratio_fp16": dense_bytes / fp16_bytes,
        "fp16_holdout_error_pct": fp16_hold, "fp16_test_error_pct": fp16_test,
        "note": "settings chosen on a holdout split of train (the dense baseline saw it in training); "
                "test split only reported; machine shared by several jobs",
    }
    print(f"\nLeNet-300-100 / MNIST, {100 * rep['sparsity']:.1f}% of weights removed "
          f"(layers: {', '.join(f'{k} {100 * v:.1f}%' for k, v in result['layer_sparsity'].items())})")
    print(f"  dense test error      {dense_test:.2f}%")
    print(f"  one-shot, no finetune {oneshot_test:.2f}%")
    print(f"  AGP ({chosen}, chosen on holdout) {pruned_test:.2f}%  (delta {pruned_test - dense_test:+.2f} points; "
          f"target <= +0.05: {result['meets_accuracy_target']}); reloaded artifact {reloaded_test:.2f}%")
    print(f"  artifact bytes: dense {dense_bytes:,}, sparse fp32 {sparse_bytes:,} ({dense_bytes / sparse_bytes:.1f}x), "
          f"sparse fp16 {fp16_bytes:,} ({dense_bytes / fp16_bytes:.1f}x, test error {fp16_test:.2f}%)")
    write_result("prune_unstructured", result)
    return result


if __name__ == "__main__":
    main()
