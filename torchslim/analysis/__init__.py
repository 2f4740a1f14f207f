"""Measurement: evaluate (accuracy, P/R/F1), profile (params, MACs, bytes), latency."""
from .evaluate import evaluate, metrics_from_logits, predict_logits

__all__ = ["evaluate", "metrics_from_logits", "predict_logits"]
