"""Measurement: evaluate (accuracy, P/R/F1), profile (params, MACs, bytes), latency."""
from .evaluate import evaluate, metrics_from_logits, predict_logits
from .latency import compare_latency, latency
from .profile import LayerProfile, Profile, profile

__all__ = ["evaluate", "metrics_from_logits", "predict_logits", "profile", "Profile", "LayerProfile", "latency",
           "compare_latency"]
