"""Running models for distillation: forward hooks that capture named modules'
outputs, capture of a Hugging Face encoder's attention probabilities and
hidden states, and the teacher (eval mode, no gradients, optional per-sample
output cache)."""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn

from ..core.errors import ConfigError

__all__ = ["FeatureTap", "Teacher", "hf_encoder", "sample_keys"]


def unwrap(net: nn.Module) -> nn.Module:
    return net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net


class FeatureTap:
    """Forward hooks on named submodules; ``outputs`` holds the latest output of each."""

    def __init__(self, model: nn.Module, names: Iterable[str], role: str = "model"):
        self.model = unwrap(model)
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = []
        modules = dict(self.model.named_modules())
        for name in dict.fromkeys(names):
            if name not in modules:
                close = [n for n in modules if name.split(".")[-1] in n][:5]
                raise ConfigError(f"distill: the {role} has no module named {name!r}"
                                  + (f"; did you mean one of {close}?" if close else ""))
            self.handles.append(modules[name].register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(_mod, _inp, out):
            if isinstance(out, (tuple, list)):
                out = out[0]
            self.outputs[name] = out
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def hf_encoder(model: nn.Module) -> nn.Module:
    """The Hugging Face encoder inside ``model`` (``model.bert`` for the zoo's
    MiniLM, or the model itself when it is a transformers PreTrainedModel)."""
    model = unwrap(model)
    for cand in (getattr(model, "bert", None), model):
        if cand is not None and hasattr(cand, "config") and hasattr(cand.config, "num_hidden_layers"):
            return cand
    raise ConfigError(f"distill: layer mapping needs a Hugging Face encoder; {type(model).__name__} has none "
                      "(expected a `.bert` attribute or a transformers model)")


class EncoderTap:
    """Capture attention probabilities and hidden states of an HF encoder
    during the wrapped model's normal forward (switches to eager attention,
    which is the only implementation that returns probabilities)."""

    def __init__(self, model: nn.Module):
        self.encoder = hf_encoder(model)
        self.out = None
        cfg = self.encoder.config
        self._saved = (cfg._attn_implementation, cfg.output_attentions, cfg.output_hidden_states)
        if cfg._attn_implementation != "eager":
            self.encoder.set_attn_implementation("eager")
        cfg.output_attentions = True
        cfg.output_hidden_states = True
        self.handle = self.encoder.register_forward_hook(lambda m, i, o: setattr(self, "out", o))

    def remove(self) -> None:
        self.handle.remove()
        cfg = self.encoder.config
        impl, att, hid = self._saved
        cfg.output_attentions, cfg.output_hidden_states = att, hid
        if impl != cfg._attn_implementation:
            self.encoder.set_attn_implementation(impl)

    def layers(self) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """(attention probabilities per layer, hidden states after each layer)."""
        o = self.out
        if o is None or o.attentions is None or o.hidden_states is None:
            raise RuntimeError("distill: the encoder did not return attentions/hidden states")
        return tuple(o.attentions), tuple(o.hidden_states[1:])


def sample_keys(x: torch.Tensor) -> list[tuple[float, float]]:
    """A fingerprint per sample: two fixed random projections in float64.
    Equal inputs give equal keys; different inputs collide with negligible
    probability."""
    flat = x.detach().reshape(x.shape[0], -1).to(torch.float64)
    g = torch.Generator().manual_seed(1234567)
    proj = torch.randn(flat.shape[1], 2, generator=g, dtype=torch.float64)
    k = flat @ proj
    return [(float(a), float(b)) for a, b in k.tolist()]


class Teacher:
    """The teacher model: eval mode, no gradients, hooks on the modules the
    loss needs; with ``cache`` its outputs are kept per sample so an epoch over
    data already seen costs no teacher forward."""

    def __init__(self, model: nn.Module, *, feature_names: Iterable[str] = (), encoder: bool = False,
                 cache: bool = False, call=None):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tap = FeatureTap(model, feature_names, role="teacher") if feature_names else None
        self.enc = EncoderTap(model) if encoder else None
        self.cache: dict | None = {} if cache else None
        self.call = call or (lambda m, x: m(x))
        self.hits = 0
        self.misses = 0

    @torch.no_grad()
    def _run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.model.eval()
        out = self.call(self.model, x)
        res: dict[str, torch.Tensor] = {"output": out}
        if self.tap is not None:
            for k, v in self.tap.outputs.items():
                res["feat:" + k] = v
        if self.enc is not None:
            att, hid = self.enc.layers()
            for i, a in enumerate(att):
                res[f"att:{i}"] = a
            for i, h in enumerate(hid):
                res[f"hid:{i}"] = h
        return {k: v.detach() for k, v in res.items()}

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.cache is None:
            self.misses += len(x)
            return self._run(x)
        keys = sample_keys(x)
        missing = [i for i, k in enumerate(keys) if k not in self.cache]
        if missing:
            fresh = self._run(x[missing] if len(missing) < len(keys) else x)
            for j, i in enumerate(missing):
                self.cache[keys[i]] = {k: v[j].clone() for k, v in fresh.items()}
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        rows = [self.cache[k] for k in keys]
        return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}

    def close(self) -> None:
        if self.tap is not None:
            self.tap.remove()
        if self.enc is not None:
            self.enc.remove()
