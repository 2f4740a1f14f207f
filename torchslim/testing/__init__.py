"""Helpers for testing torchslim on models it did not write: a suite of
Hugging Face ``transformers`` architectures built from small configs,
offline, with random weights."""
