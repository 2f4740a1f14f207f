"""Example and calibration inputs for exports and benchmarks: token batches
for the sentence encoder (from the offline corpus, ``zoo/text.py``), data-set
batches for the other models (calibration from a holdout of the train split,
never the test split)."""
from __future__ import annotations

import torch

__all__ = ["is_text_model", "token_batch", "text_calibration", "image_calibration"]


def is_text_model(model) -> bool:
    from ..zoo.minilm import MiniLM

    return isinstance(model, MiniLM)


def token_batch(sentences: list[str], *, seq: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of ``sentences``; with ``seq`` every row has
    exactly ``seq`` tokens (truncated, or padded and masked)."""
    from ..zoo.minilm import tokenizer

    tok = tokenizer()
    kw = dict(padding="max_length", max_length=seq, truncation=True) if seq else dict(padding=True, truncation=True,
                                                                                          max_length=256)
    enc = tok(list(sentences), return_tensors="pt", **kw)
    return enc["input_ids"].long(), enc["attention_mask"].long()


def full_token_batch(batch: int, seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A latency input of ``batch`` x ``seq`` real tokens, no padding: corpus
    sentences concatenated and cut into rows."""
    from ..zoo.minilm import tokenizer
    from ..zoo.text import sentences

    tok = tokenizer()
    ids: list[int] = []
    for s in sentences(split="eval"):
        ids += tok(s, add_special_tokens=False)["input_ids"]
        if len(ids) >= batch * (seq - 2):
            break
    rows = [[tok.cls_token_id] + ids[i * (seq - 2):(i + 1) * (seq - 2)] + [tok.sep_token_id] for i in range(batch)]
    return torch.tensor(rows, dtype=torch.long), torch.ones(batch, seq, dtype=torch.long)


def text_calibration(n: int, *, batch_size: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` calibration sentences (the corpus' calib split) in token batches."""
    from ..zoo.text import sentences

    sents = sentences(n, split="calib")
    return [token_batch(sents[i: i + batch_size]) for i in range(0, len(sents), batch_size)]


def image_calibration(dataset: str, n: int, *, batch_size: int = 128) -> list[torch.Tensor]:
    from ..zoo.data import load_dataset, split_train

    _, holdout = split_train(load_dataset(dataset, "train"), n)
    return [holdout.x[i: i + batch_size] for i in range(0, len(holdout), batch_size)]
