"""Deep Compression's trained quantization (Han et al. 2016): per layer, the
weights share 2^bits values found by 1-D k-means with linear initialisation
(centroids evenly spaced between the min and max weight); fine-tuning then
updates each shared value by the sum of the gradients of its cluster's
weights (``WeightSharing``, a fit Callback working in ``on_after_backward``).

For a pruned layer only the non-zero weights are clustered and zeros stay
exactly zero. After every optimizer step each weight is set to its cluster's
value, so the weights stay exactly on the codebook (a codec finds it from the
tensor itself) and a run resumed from a checkpoint continues exactly.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..core.config import register_handler
from ..core.errors import ConfigError
from ..train import Callback, fit
from .configs import KMeansConfig

__all__ = ["kmeans_1d", "share_weights", "WeightSharing", "codebook_of", "quantize_kmeans"]


@torch.no_grad()
def kmeans_1d(values: torch.Tensor, k: int, *, iters: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on a 1-D tensor with linear initialisation. Returns
    (centroids [k'] sorted, assignment [n]); empty clusters are dropped."""
    v = values.detach().double().reshape(-1)
    if v.numel() == 0:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    k = min(k, v.numel())
    c = torch.linspace(float(v.min()), float(v.max()), k, dtype=torch.float64)
    for _ in range(iters):
        idx = _nearest(v, c)
        sums = torch.zeros_like(c).scatter_add_(0, idx, v)
        counts = torch.zeros_like(c).scatter_add_(0, idx, torch.ones_like(v))
        new = torch.where(counts > 0, sums / counts.clamp(min=1), c)
        if torch.equal(new, c):
            break
        c = new
    idx = _nearest(v, c)
    used = torch.unique(idx)
    remap = torch.full((len(c),), -1, dtype=torch.long)
    remap[used] = torch.arange(len(used))
    return c[used].float(), remap[idx]


def _nearest(v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (c sorted ascending; ties to the lower)."""
    mids = (c[1:] + c[:-1]) / 2
    return torch.bucketize(v, mids, right=False)


def codebook_of(w: torch.Tensor) -> torch.Tensor:
    """The distinct non-zero values of a tensor (its codebook after sharing)."""
    u = torch.unique(w.detach())
    return u[u != 0]


class WeightSharing(Callback):
    """Keeps shared weights shared during fit: gradients summed per cluster
    (every member gets its cluster's total), zeros get no gradient, and after
    each step every weight is reset to its cluster's value exactly."""

    def __init__(self, layers: dict[str, tuple[nn.Parameter, torch.Tensor]]):
        # name -> (weight parameter, assignment: -1 for a kept zero, else cluster id)
        self.layers = layers

    def on_fit_start(self, state) -> None:
        # Under DDP the weights were just broadcast from rank 0: take rank 0's
        # cluster assignment too, so every rank snaps to the same codebook.
        if state.world_size > 1:
            import torch.distributed as dist

            for p, idx in self.layers.values():
                dist.broadcast(idx, src=0)
                snap_(p, idx)

    def on_after_backward(self, state) -> None:
        for p, idx in self.layers.values():
            if p.grad is None:
                continue
            g = p.grad.reshape(-1)
            mask = idx >= 0
            k = int(idx.max()) + 1 if mask.any() else 0
            sums = torch.zeros(k, dtype=g.dtype).scatter_add_(0, idx[mask], g[mask])
            new = torch.zeros_like(g)
            new[mask] = sums[idx[mask]]
            p.grad.copy_(new.reshape(p.grad.shape))

    @torch.no_grad()
    def on_batch_end(self, state) -> None:
        for p, idx in self.layers.values():
            snap_(p, idx)

    def state_dict(self) -> dict:
        return {"assignments": {n: idx.clone() for n, (_, idx) in self.layers.items()}}

    def load_state_dict(self, state: dict) -> None:
        for n, idx in state.get("assignments", {}).items():
            if n in self.layers:
                self.layers[n] = (self.layers[n][0], idx.clone())


@torch.no_grad()
def snap_(p: torch.Tensor, idx: torch.Tensor) -> None:
    """Set every member of a cluster to the value of the cluster's first member; zeros to 0."""
    flat = p.data.reshape(-1)
    mask = idx >= 0
    if not mask.any():
        flat.zero_()
        return
    k = int(idx.max()) + 1
    pos = torch.arange(len(idx))
    first = torch.full((k,), len(idx), dtype=torch.long).scatter_reduce_(0, idx[mask], pos[mask], "amin")
    values = flat[first]
    flat.copy_(torch.where(mask, values[idx.clamp(min=0)], torch.zeros_like(flat)))


def _make_weight_plain(layer: nn.Module) -> None:
    """Weight sharing edits the weight Parameter itself: a reversible pruning
    mask (torch.nn.utils.prune's weight_orig/weight_mask, or a parametrization)
    is made permanent first. Pruned entries stay zero: k-means clusters only the
    non-zeros and the sharing callback keeps zeros at zero."""
    import torch.nn.utils.prune as tprune
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(layer, "weight"):
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    if hasattr(layer, "weight_orig") and hasattr(layer, "weight_mask"):
        tprune.remove(layer, "weight")


@torch.no_grad()
def share_weights(model: nn.Module, cfg: KMeansConfig = KMeansConfig()) -> dict[str, tuple[nn.Parameter, torch.Tensor]]:
    """Cluster the weights (and with ``cfg.bias_bits`` the biases) of every
    in-scope Linear/Conv in place; returns {name: (weight, assignment)} (biases
    as ``name.bias``) for ``WeightSharing``."""
    cfg.scope.check_names(model)
    selected = dict(cfg.scope.select(model))
    unknown = sorted(set(cfg.layer_bits) - set(selected))
    if unknown:
        raise ConfigError(f"quantize.kmeans layer_bits: {unknown} are not in-scope Linear/Conv layers of the model; "
                          f"use some of {sorted(selected)}")
    out = {}
    for name, layer in selected.items():
        _make_weight_plain(layer)
        out[name] = (layer.weight, _share(layer.weight, cfg.bits_for(name), cfg.iters))
        bias = getattr(layer, "bias", None)
        if cfg.bias_bits is not None and isinstance(bias, nn.Parameter):
            out[name + ".bias"] = (bias, _share(bias, cfg.bias_bits, cfg.iters))
    return out


@torch.no_grad()
def _share(p: torch.Tensor, bits: int, iters: int) -> torch.Tensor:
    """Cluster the non-zeros of ``p`` into 2^bits values in place; the assignment (-1: a kept zero)."""
    flat = p.data.reshape(-1)
    mask = flat != 0
    idx = torch.full((flat.numel(),), -1, dtype=torch.long)
    if mask.any():
        centroids, assign = kmeans_1d(flat[mask], 2 ** bits, iters=iters)
        idx[mask] = assign
        flat.copy_(torch.where(mask, centroids[idx.clamp(min=0)], torch.zeros_like(flat)))
    snap_(p, idx)
    return idx


def quantize_kmeans(model: nn.Module, cfg: KMeansConfig = KMeansConfig(), *, train_data=None, loss_fn=None,
                    out_dir=None, progress: bool = True) -> nn.Module:
    """Share weights and, with ``cfg.finetune``, fine-tune the shared values. In place."""
    layers = share_weights(model, cfg)
    if cfg.finetune is not None and cfg.finetune.epochs > 0:
        if train_data is None:
            from ..core.errors import DataError

            raise DataError("quantize.kmeans fine-tuning needs training data (ctx.train_data)")
        fit(model, train_data, cfg.finetune, loss_fn=loss_fn, callbacks=[WeightSharing(layers)], out_dir=out_dir,
            progress=progress)
    return model.eval()


@register_handler(KMeansConfig)
def _kmeans_handler(model, cfg: KMeansConfig, ctx):
    return quantize_kmeans(model, cfg, train_data=ctx.train_data, loss_fn=ctx.loss_fn, out_dir=ctx.stage_out,
                           progress=ctx.progress)
