"""Small models for the export tests (importable, so artifacts/exports can name them)."""
import torch.nn as nn


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 8, 3)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(8 * 2 * 2, 32)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(self.conv1(x))
        x = self.pool(self.conv2(x))
        return self.fc2(self.relu(self.fc1(self.flatten(x))))


class TokenMLP(nn.Module):
    """Linear layers on (batch, seq, features): exported as MatMul + Add."""

    def __init__(self, d=24, h=48):
        super().__init__()
        self.inp = nn.Linear(d, h)
        self.act = nn.GELU()
        self.out = nn.Linear(h, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        return self.norm(x + self.out(self.act(self.inp(x))))


class TokenEncoder(nn.Module):
    """A vocabulary table + Linear on token ids (int64 input)."""

    def __init__(self, vocab=2000, d=16):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.proj = nn.Linear(d, 32)

    def forward(self, ids):
        return self.proj(self.emb(ids))
