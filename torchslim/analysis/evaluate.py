"""Accuracy and friends on a named split: top-1, top-k, macro precision /
recall / F1 and the confusion matrix. Works for an ``nn.Module`` or any
callable mapping an input batch to logits (e.g. an ONNX Runtime session
wrapper), so the deployed model itself can be measured. The data is an
``ArrayDataset`` or ``StreamingDataset`` (sliced batch by batch, so large data
streams), or any iterable of ``(x, y)`` batches such as a ``DataLoader``; a
Hugging Face output's ``.logits`` are used."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch


def as_logits(out) -> torch.Tensor:
    """A model's output as a tensor: ``out.logits`` of a Hugging Face output, else ``out``."""
    if not isinstance(out, torch.Tensor) and hasattr(out, "logits"):
        out = out.logits
    return torch.as_tensor(out).float()


@torch.no_grad()
def _predict(model: Callable, data, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    was_training = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.eval()
    outs, labels = [], []
    try:
        if hasattr(data, "x"):
            for i in range(0, len(data), batch_size):
                outs.append(as_logits(model(data.x[i: i + batch_size])))
        else:  # an iterable of (x, y) batches, e.g. a torch DataLoader
            for x, y in data:
                outs.append(as_logits(model(x)))
                labels.append(torch.as_tensor(y))
    finally:
        if was_training:
            model.train()
    return torch.cat(outs), (torch.cat(labels) if labels else None)


def predict_logits(model: Callable, data, *, batch_size: int = 1000) -> torch.Tensor:
    return _predict(model, data, batch_size)[0]


def metrics_from_logits(logits: torch.Tensor, labels: torch.Tensor, *, topk: Sequence[int] = (1, 5),
                        num_classes: int | None = None) -> dict:
    labels = labels.long()
    n = len(labels)
    num_classes = num_classes or int(max(logits.shape[1], int(labels.max()) + 1))
    pred = logits.argmax(1)
    out: dict = {"n": n, "accuracy": float((pred == labels).float().mean()) if n else 0.0}
    for k in topk:
        if k <= 1 or k > logits.shape[1]:
            continue
        top = logits.topk(k, dim=1).indices
        out[f"top{k}"] = float((top == labels[:, None]).any(1).float().mean())
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels.numpy(), pred.numpy()), 1)
    tp = np.diag(cm).astype(np.float64)
    pred_pos, true_pos = cm.sum(0), cm.sum(1)
    precision = np.divide(tp, pred_pos, out=np.zeros_like(tp), where=pred_pos > 0)
    recall = np.divide(tp, true_pos, out=np.zeros_like(tp), where=true_pos > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    present = true_pos > 0
    out.update({
        "error": 1.0 - out["accuracy"],
        "precision_macro": float(precision[present].mean()) if present.any() else 0.0,
        "recall_macro": float(recall[present].mean()) if present.any() else 0.0,
        "f1_macro": float(f1[present].mean()) if present.any() else 0.0,
        "confusion_matrix": cm.tolist(),
    })
    return out


def evaluate(model: Callable, data, *, batch_size: int = 1000, topk: Sequence[int] = (1, 5)) -> dict:
    """Metrics of ``model`` on ``data`` (an ArrayDataset or StreamingDataset,
    an iterable of ``(x, y)`` batches, or a (dataset name, split) pair such as
    ``("mnist", "test")``)."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], str):
        from ..zoo.data import load_dataset

        data = load_dataset(*data)
    logits, labels = _predict(model, data, batch_size)
    return metrics_from_logits(logits, data.y if labels is None else labels, topk=topk)
