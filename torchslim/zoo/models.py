"""Built-in models, by name. Every model takes its data set's raw input
(MNIST: floats in [0, 1], shape (N, 784) or (N, 1, 28, 28)) and carries its
own input normalisation as buffers, so a saved artifact needs nothing else.

Builders take only JSON-serialisable keyword arguments; ``build_model`` stamps
the result with ``model.torchslim_arch = {"zoo": name, "kwargs": {...}}`` so
``torchslim.save`` can record how to rebuild it.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import ModelError

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(name: str, description: str = ""):
    def deco(fn):
        _MODELS[name] = fn
        _DESCRIPTIONS[name] = description or (fn.__doc__ or "").strip().split("\n")[0]
        return fn

    return deco


def model_names() -> list[str]:
    return sorted(_MODELS)


def model_description(name: str) -> str:
    return _DESCRIPTIONS[name]


def build_model(name: str, *, dataset: str | None = None, **kwargs: Any) -> nn.Module:
    """Build zoo model ``name``. With ``dataset``, input shape, class count and
    normalisation default to that data set's."""
    if name not in _MODELS:
        raise ModelError(f"unknown model {name!r}; known zoo models: {model_names()}")
    if dataset is not None:
        from .data import dataset_info

        info = dataset_info(dataset)
        import inspect

        params = inspect.signature(_MODELS[name]).parameters
        defaults = {"input_shape": list(info.input_shape), "num_classes": info.num_classes,
                    "mean": info.mean, "std": info.std}
        for k, v in defaults.items():
            if k in params:
                kwargs.setdefault(k, v)
    model = _MODELS[name](**kwargs)
    model.torchslim_arch = {"zoo": name, "kwargs": _jsonable(kwargs)}
    return model


def _jsonable(v):
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


class Normalize(nn.Module):
    """(x - mean) / std with constants kept as buffers (no parameters)."""

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x):
        return (x - self.mean) / self.std


class ToImage(nn.Module):
    """Reshape flat input (N, C*H*W) or images (N, C, H, W) to images."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


def _prod(shape) -> int:
    return int(math.prod(shape))


# ---------------------------------------------------------------- LeNet-300-100
class LeNet300(nn.Module):
    """LeNet-300-100: fully connected 784-300-100-10 with ReLU."""

    def __init__(self, input_shape=(1, 28, 28), num_classes: int = 10, hidden=(300, 100),
                 mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.norm = Normalize(mean, std)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(_prod(input_shape), hidden[0])
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(hidden[1], num_classes)

    def forward(self, x):
        x = self.flatten(self.norm(x))
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(x)))))


@register_model("lenet300", "LeNet-300-100 MLP (266,610 params on MNIST)")
def lenet300(input_shape=(1, 28, 28), num_classes: int = 10, hidden=(300, 100), mean: float = 0.0, std: float = 1.0):
    return LeNet300(input_shape, num_classes, tuple(hidden), mean, std)


@register_model("mlp", "MLP of any widths (teachers/students for distillation)")
def mlp(input_shape=(1, 28, 28), num_classes: int = 10, hidden=(1200, 1200), dropout: float = 0.0,
        mean: float = 0.0, std: float = 1.0):
    layers: list[nn.Module] = [Normalize(mean, std), nn.Flatten()]
    width = _prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- LeNet-5 (Caffe)
class LeNet5(nn.Module):
    """Caffe LeNet-5: conv 5x5x20, maxpool, conv 5x5x50, maxpool, fc 800-500, ReLU, fc 500-10."""

    def __init__(self, input_shape=(1, 28, 28), num_classes: int = 10, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        c, h, w = input_shape
        if h < 16 or w < 16:
            raise ModelError(f"lenet5 needs images of at least 16x16, got {tuple(input_shape)}; use lenet300 or mlp")
        self.to_image = ToImage(input_shape)
        self.norm = Normalize(mean, std)
        self.conv1 = nn.Conv2d(c, 20, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        fh, fw = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(50 * fh * fw, 500)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x):
        x = self.norm(self.to_image(x))
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        return self.fc2(self.relu(self.fc1(self.flatten(x))))


@register_model("lenet5", "Caffe LeNet-5 (431,080 params on MNIST)")
def lenet5(input_shape=(1, 28, 28), num_classes: int = 10, mean: float = 0.0, std: float = 1.0):
    return LeNet5(tuple(input_shape), num_classes, mean, std)


# ---------------------------------------------------------------- small ResNet
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + identity)


class ResNetSmall(nn.Module):
    """A small residual CNN: stem, three stages of basic blocks, global pool, fc."""

    def __init__(self, input_shape=(1, 28, 28), num_classes: int = 10, width: int = 16,
                 blocks=(1, 1, 1), mean: float = 0.0, std: float = 1.0):
        super().__init__()
        c = input_shape[0]
        self.to_image = ToImage(input_shape)
        self.norm = Normalize(mean, std)
        self.stem = nn.Sequential(nn.Conv2d(c, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages = []
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2 ** i
            layers = []
            for j in range(n):
                layers.append(BasicBlock(cin, cout, stride=2 if (i > 0 and j == 0) else 1))
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.stem(self.norm(self.to_image(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(x)))


@register_model("resnet8", "small residual CNN (3 stages of basic blocks, BatchNorm)")
def resnet8(input_shape=(1, 28, 28), num_classes: int = 10, width: int = 16, blocks=(1, 1, 1),
            mean: float = 0.0, std: float = 1.0):
    if len(blocks) != 3:
        raise ModelError(f"resnet8: blocks must list 3 stage depths, got {blocks}")
    return ResNetSmall(tuple(input_shape), num_classes, width, tuple(blocks), mean, std)


# ---------------------------------------------------------------- MobileNetV2-style
class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2Small(nn.Module):
    """MobileNetV2-style CNN: inverted residual blocks with depthwise convolutions."""

    # (expansion, channels, repeats, stride)
    SETTINGS = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 64, 2, 1))

    def __init__(self, input_shape=(1, 28, 28), num_classes: int = 10, width_mult: float = 1.0,
                 last_channels: int = 256, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        c = input_shape[0]
        self.to_image = ToImage(input_shape)
        self.norm = Normalize(mean, std)
        stem = max(8, int(round(16 * width_mult)))
        feats: list[nn.Module] = [nn.Sequential(nn.Conv2d(c, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU6())]
        cin = stem
        for t, ch, n, s in self.SETTINGS:
            cout = max(8, int(round(ch * width_mult)))
            for i in range(n):
                feats.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        feats.append(nn.Sequential(nn.Conv2d(cin, last_channels, 1, bias=False), nn.BatchNorm2d(last_channels), nn.ReLU6()))
        self.features = nn.Sequential(*feats)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(last_channels, num_classes)

    def forward(self, x):
        x = self.features(self.norm(self.to_image(x)))
        return self.classifier(self.flatten(self.pool(x)))


@register_model("mobilenetv2", "MobileNetV2-style CNN (inverted residuals, depthwise convs)")
def mobilenetv2(input_shape=(1, 28, 28), num_classes: int = 10, width_mult: float = 1.0, last_channels: int = 256,
                mean: float = 0.0, std: float = 1.0):
    return MobileNetV2Small(tuple(input_shape), num_classes, width_mult, last_channels, mean, std)


# ---------------------------------------------------------------- small transformer
class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections. The head count
    is derived from the projection width (``q.out_features // head_dim``), so
    removing whole heads is just slicing q/k/v rows and ``proj`` columns."""

    def __init__(self, dim: int, num_heads: int, head_dim: int | None = None):
        super().__init__()
        self.head_dim = head_dim or dim // num_heads
        inner = num_heads * self.head_dim
        self.q = nn.Linear(dim, inner)
        self.k = nn.Linear(dim, inner)
        self.v = nn.Linear(dim, inner)
        self.proj = nn.Linear(inner, dim)

    @property
    def num_heads(self) -> int:
        return self.q.out_features // self.head_dim

    def forward(self, x):
        b, n, _ = x.shape
        h = self.q.out_features // self.head_dim
        q = self.q(x).reshape(b, n, h, self.head_dim).transpose(1, 2)
        k = self.k(x).reshape(b, n, h, self.head_dim).transpose(1, 2)
        v = self.v(x).reshape(b, n, h, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, h * self.head_dim))


class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTSmall(nn.Module):
    """A small vision transformer: non-overlapping patches, learned position
    embeddings, pre-norm blocks, mean-pooled tokens, linear head."""

    def __init__(self, input_shape=(1, 28, 28), num_classes: int = 10, patch: int = 7, dim: int = 64,
                 depth: int = 4, num_heads: int = 4, mlp_hidden: int = 128, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        c, h, w = input_shape
        if h % patch or w % patch:
            raise ModelError(f"vit: image {h}x{w} is not divisible by patch size {patch}; choose a patch that divides it")
        if dim % num_heads:
            raise ModelError(f"vit: dim {dim} is not divisible by num_heads {num_heads}")
        self.to_image = ToImage(input_shape)
        self.norm = Normalize(mean, std)
        self.patch_embed = nn.Conv2d(c, dim, patch, patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, (h // patch) * (w // patch), dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, num_heads, mlp_hidden) for _ in range(depth)])
        self.final_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(self.norm(self.to_image(x)))  # (B, dim, H/p, W/p)
        x = x.flatten(2).transpose(1, 2) + self.pos_embed
        x = self.final_norm(self.blocks(x))
        return self.head(x.mean(dim=1))


@register_model("vit", "small vision transformer (patch embedding, 4 pre-norm blocks of 4 heads)")
def vit(input_shape=(1, 28, 28), num_classes: int = 10, patch: int = 7, dim: int = 64, depth: int = 4,
        num_heads: int = 4, mlp_hidden: int = 128, mean: float = 0.0, std: float = 1.0):
    return ViTSmall(tuple(input_shape), num_classes, patch, dim, depth, num_heads, mlp_hidden, mean, std)


@register_model("minilm", "pretrained all-MiniLM-L6-v2 sentence encoder (mean pooling, L2-normalised)")
def minilm(pretrained: bool = True, num_layers: int | None = None):
    from .minilm import MiniLM

    return MiniLM(pretrained=pretrained, num_layers=num_layers)
