"""The search space: which knobs a trial turns, as frozen configs.

Knobs (Optuna parameter names in brackets):

* structured pruning: each channel group's kept fraction (``keep.<group>``)
  and whole residual blocks removed (``blocks``); or, for the ``greedy``
  strategy, the NetAdapt-style greedy allocation's speedup target
  (``greedy.speedup``);
* unstructured sparsity by gradual pruning (AGP): each layer's kept
  fraction of weights (``density.<layer>``, log scale);
* k-means weight sharing: bits per layer (``bits.<layer>``, or ``bits``) and
  for the biases (``bias_bits``), and the epochs fine-tuning the shared
  values (``kmeans_epochs``);
* low rank: each Linear layer's kept fraction of parameters as a truncated
  SVD (``rank.<layer>``; 1 leaves it whole);
* distillation from the baseline on or off (``distill``) and its
  temperature (``temperature``);
* the fine-tune budget (``epochs``, and ``lr`` if given a range).

A range whose ends are equal is a fixed setting, not a knob. ``enabled:
null`` (the default) turns a family on when the goal calls for it: structured
pruning for a latency objective or a speed/latency constraint; sparsity,
weight sharing and the entropy-coded artifact for a bytes objective or
constraint. ``resolve`` turns the space into a flat list of ``Knob``s for
one model (its groups, layers and blocks), ``sample`` draws a trial's
values, and ``trial_stages`` writes them as recipe stages.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Literal

from ..core.config import Config
from ..core.errors import ConfigError

__all__ = ["StructuredSpace", "GreedySpace", "UnstructuredSpace", "QuantizeSpace", "LowRankSpace", "DistillSpace",
           "FinetuneSpace", "SearchSpace", "Knob"]


def _range(where: str, r, lo: float, hi: float) -> None:
    if r is None:
        return
    if len(r) != 2 or not lo <= r[0] <= r[1] <= hi:
        raise ConfigError(f"{where} must be [low, high] with {lo} <= low <= high <= {hi}, got {list(r)}")


@dataclasses.dataclass(frozen=True)
class StructuredSpace(Config):
    """Per-group channel fractions kept in ``[min_keep, 1]`` (``groups``: only
    these groups, by first producing layer; default all), up to
    ``max_blocks`` residual blocks removed. Groups whose every cut saves less
    than ``min_saving`` of the time in the measured per-group latency table
    are left whole when latency matters (a cheap proxy pruning the space)."""

    enabled: bool | None = None
    min_keep: float = 0.25
    groups: tuple[str, ...] = ()
    max_blocks: int = 2
    importance: Literal["l1", "l2", "taylor", "activation", "apoz", "bn_scale"] = "l2"
    round_to: int | None = 8
    recalibrate_bn: int = 8
    min_saving: float = 0.01

    def validate(self) -> None:
        if not 0.0 < self.min_keep <= 1.0:
            raise ConfigError(f"StructuredSpace.min_keep must be in (0, 1], got {self.min_keep}")
        if self.max_blocks < 0:
            raise ConfigError(f"StructuredSpace.max_blocks must be >= 0, got {self.max_blocks}")
        if self.round_to is not None and self.round_to < 1:
            raise ConfigError(f"StructuredSpace.round_to must be positive or null, got {self.round_to}")
        if self.recalibrate_bn < 0:
            raise ConfigError(f"StructuredSpace.recalibrate_bn must be >= 0, got {self.recalibrate_bn}")
        if not 0.0 <= self.min_saving < 1.0:
            raise ConfigError(f"StructuredSpace.min_saving must be in [0, 1), got {self.min_saving}")


@dataclasses.dataclass(frozen=True)
class GreedySpace(Config):
    """The ``greedy`` strategy: ``prune.structured(target="latency",
    allocation="greedy")`` at speedup targets spread over ``speedup`` (one per
    trial), channel steps ``steps``, ranked by ``importance``."""

    speedup: tuple[float, float] = (1.3, 2.2)
    steps: tuple[int, ...] = (8, 16)
    importance: Literal["l1", "l2", "taylor"] = "taylor"

    def validate(self) -> None:
        if len(self.speedup) != 2 or not 1.0 < self.speedup[0] <= self.speedup[1]:
            raise ConfigError(f"GreedySpace.speedup must be [low, high] with 1 < low <= high, got {list(self.speedup)}")
        if not self.steps or any(s < 1 for s in self.steps):
            raise ConfigError(f"GreedySpace.steps must list positive channel multiples, got {list(self.steps)}")


@dataclasses.dataclass(frozen=True)
class UnstructuredSpace(Config):
    """Per-layer kept fraction of weights (density) in ``[min_density, 1]``
    on a log scale (``densities`` overrides a layer's range; ``layers``: only
    these), reached by AGP over the fine-tune (``end``: fraction of it spent
    pruning, masks updated every ``frequency`` steps); units nothing reads any
    more are removed physically (``remove_dead``). ``max_oneshot_drop``
    (points; null: off): a cheap proxy narrows each layer's range from below
    to the density where pruning that layer alone, in one shot, costs this
    much holdout accuracy (a sensitivity scan; a layer pruned past that point
    has not recovered in a short fine-tune); ranges in ``densities`` are kept
    as given."""

    enabled: bool | None = None
    min_density: float = 0.005
    layers: tuple[str, ...] = ()
    densities: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    end: float = 0.6
    frequency: int = 100
    remove_dead: bool = True
    max_oneshot_drop: float | None = None

    def validate(self) -> None:
        if not 0.0 < self.min_density <= 1.0:
            raise ConfigError(f"UnstructuredSpace.min_density must be in (0, 1], got {self.min_density}")
        for k, r in self.densities.items():
            _range(f"UnstructuredSpace.densities[{k!r}]", r, 1e-4, 1.0)
            if r[0] <= 0:
                raise ConfigError(f"UnstructuredSpace.densities[{k!r}] must be above 0, got {list(r)}")
        if not 0.0 < self.end <= 1.0:
            raise ConfigError(f"UnstructuredSpace.end must be in (0, 1], got {self.end}")
        if self.frequency < 1:
            raise ConfigError(f"UnstructuredSpace.frequency must be >= 1, got {self.frequency}")
        if self.max_oneshot_drop is not None and not 0 < self.max_oneshot_drop <= 100:
            raise ConfigError(f"UnstructuredSpace.max_oneshot_drop must be in (0, 100] points or null, "
                              f"got {self.max_oneshot_drop}")


@dataclasses.dataclass(frozen=True)
class QuantizeSpace(Config):
    """k-means weight sharing: ``bits`` per layer (``per_layer``) or one for
    all, ``bias_bits`` for the biases (null: biases kept), ``epochs`` of
    fine-tuning the shared values at ``lr``."""

    enabled: bool | None = None
    bits: tuple[int, int] = (2, 6)
    per_layer: bool = True
    bias_bits: tuple[int, int] | None = (3, 6)
    epochs: tuple[int, int] = (0, 2)
    lr: float = 1e-4

    def validate(self) -> None:
        _range("QuantizeSpace.bits", self.bits, 1, 8)
        _range("QuantizeSpace.bias_bits", self.bias_bits, 1, 8)
        _range("QuantizeSpace.epochs", self.epochs, 0, 1000)
        if self.lr <= 0:
            raise ConfigError(f"QuantizeSpace.lr must be positive, got {self.lr}")


@dataclasses.dataclass(frozen=True)
class LowRankSpace(Config):
    """Truncated SVD of Linear layers (``layers``: only these): each keeps a
    fraction of its parameters in ``[min_keep, 1]``; at or above
    ``off_above`` the layer is left whole."""

    enabled: bool = False
    min_keep: float = 0.1
    layers: tuple[str, ...] = ()
    off_above: float = 0.95

    def validate(self) -> None:
        if not 0.0 < self.min_keep < 1.0:
            raise ConfigError(f"LowRankSpace.min_keep must be in (0, 1), got {self.min_keep}")
        if not self.min_keep < self.off_above <= 1.0:
            raise ConfigError(f"LowRankSpace.off_above must be in (min_keep, 1], got {self.off_above}")


@dataclasses.dataclass(frozen=True)
class DistillSpace(Config):
    """Distillation from the baseline (recipe-level ``teacher: baseline``)
    on/off among ``choices``; when on, ``temperature`` in the range, ``alpha``
    fixed."""

    choices: tuple[bool, ...] = (False, True)
    temperature: tuple[float, float] = (2.0, 8.0)
    alpha: float = 0.7

    def validate(self) -> None:
        if not self.choices or len(set(self.choices)) != len(self.choices):
            raise ConfigError(f"DistillSpace.choices must list true and/or false once each, got {list(self.choices)}")
        _range("DistillSpace.temperature", self.temperature, 0.1, 100.0)
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"DistillSpace.alpha must be in [0, 1], got {self.alpha}")


@dataclasses.dataclass(frozen=True)
class FinetuneSpace(Config):
    """Fine-tune ``epochs`` (a range: searched) and, if given, ``lr`` (a
    range, log scale); the other training fields come from the search's
    ``finetune`` template."""

    epochs: tuple[int, int] = (1, 3)
    lr: tuple[float, float] | None = None

    def validate(self) -> None:
        _range("FinetuneSpace.epochs", self.epochs, 0, 10000)
        if self.lr is not None:
            _range("FinetuneSpace.lr", self.lr, 1e-9, 10.0)
            if self.lr[0] <= 0:
                raise ConfigError(f"FinetuneSpace.lr must be positive, got {list(self.lr)}")


@dataclasses.dataclass(frozen=True)
class SearchSpace(Config):
    structured: StructuredSpace = StructuredSpace()
    greedy: GreedySpace = GreedySpace()
    unstructured: UnstructuredSpace = UnstructuredSpace()
    quantize: QuantizeSpace = QuantizeSpace()
    lowrank: LowRankSpace = LowRankSpace()
    distill: DistillSpace = DistillSpace()
    finetune: FinetuneSpace = FinetuneSpace()
    encode: bool | None = None  # write the entropy-coded artifact (null: when bytes matter)

    def for_goal(self, *, wants_latency: bool, wants_bytes: bool) -> "SearchSpace":
        """The space with every ``enabled: null`` decided by the goal."""
        def pick(v, default):
            return default if v is None else v

        return self.replace(
            structured=self.structured.replace(enabled=pick(self.structured.enabled, wants_latency)),
            unstructured=self.unstructured.replace(enabled=pick(self.unstructured.enabled, wants_bytes)),
            quantize=self.quantize.replace(enabled=pick(self.quantize.enabled, wants_bytes)),
            encode=pick(self.encode, wants_bytes))


@dataclasses.dataclass(frozen=True)
class Knob:
    """One searched parameter. ``when``: (other knob, value) it depends on."""

    name: str
    kind: str  # "float" | "int" | "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None
    default: Any = None
    when: tuple[str, Any] | None = None

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Knob":
        d = dict(d)
        for k in ("choices", "when"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)


def _fl(name, lo, hi, default, *, log=False, when=None) -> list[Knob]:
    return [] if lo == hi else [Knob(name, "float", float(lo), float(hi), log, None, default, when)]


def _int(name, lo, hi, default, *, when=None) -> list[Knob]:
    return [] if lo == hi else [Knob(name, "int", int(lo), int(hi), False, None, default, when)]


def resolve(space: SearchSpace, info: dict, *, strategy: str, frozen_groups: set[str] = frozenset(),
            density_floors: dict[str, float] | None = None) -> list[Knob]:
    """The flat list of knobs of ``space`` for a model described by ``info``
    (``model_info``: its groups, layers and residual blocks). Groups in
    ``frozen_groups`` (a proxy found cutting them saves no time) are not
    searched; ``density_floors`` (from a sensitivity scan) raise the lower
    end of the layers' density ranges."""
    knobs: list[Knob] = []
    groups, layers, blocks = info["groups"], info["layers"], info["blocks"]
    s = space.structured
    if strategy == "greedy":
        g = space.greedy
        knobs += _fl("greedy.speedup", g.speedup[0], g.speedup[1], g.speedup[0])
    if s.enabled or strategy == "greedy":
        nb = min(s.max_blocks, len(blocks))
        knobs += _int("blocks", 0, nb, 0)
    if s.enabled and strategy != "greedy":
        unknown = sorted(set(s.groups) - set(groups))
        if unknown:
            raise ConfigError(f"space.structured.groups: {unknown} are not channel groups of the model; groups are "
                              f"{sorted(groups)}")
        for key in (s.groups or groups):
            if key not in frozen_groups:
                knobs += _fl(f"keep.{key}", s.min_keep, 1.0, 1.0)
    u = space.unstructured
    if u.enabled:
        names = _layer_names(u.layers, layers, "space.unstructured.layers")
        for key in sorted(set(u.densities) - set(layers)):
            raise ConfigError(f"space.unstructured.densities: {key!r} is not a Linear/Conv layer; layers are "
                              f"{sorted(layers)}")
        for name in names:
            lo, hi = u.densities.get(name, (max(u.min_density, (density_floors or {}).get(name, 0.0)), 1.0))
            knobs += _fl(f"density.{name}", lo, hi, hi, log=True)
    r = space.lowrank
    if r.enabled:
        linear = {k: v for k, v in layers.items() if v["type"] == "Linear"}
        for name in _layer_names(r.layers, linear, "space.lowrank.layers"):
            knobs += _fl(f"rank.{name}", r.min_keep, 1.0, 1.0)
    q = space.quantize
    if q.enabled:
        own = _quantized_layers(info, space) if q.per_layer else []
        for name in own:
            knobs += _int(f"bits.{name}", q.bits[0], q.bits[1], q.bits[1])
        if len(own) < len(layers):  # the bits of every layer without its own
            knobs += _int("bits", q.bits[0], q.bits[1], q.bits[1])
        if q.bias_bits is not None:
            knobs += _int("bias_bits", q.bias_bits[0], q.bias_bits[1], q.bias_bits[1])
        knobs += _int("kmeans_epochs", q.epochs[0], q.epochs[1], q.epochs[1])
    d = space.distill
    if len(d.choices) > 1:
        knobs.append(Knob("distill", "categorical", choices=tuple(d.choices), default=True in d.choices))
    if True in d.choices:
        knobs += _fl("temperature", d.temperature[0], d.temperature[1],
                     min(max(4.0, d.temperature[0]), d.temperature[1]), when=("distill", True) if len(d.choices) > 1
                     else None)
    f = space.finetune
    knobs += _int("epochs", f.epochs[0], f.epochs[1], f.epochs[1])
    if f.lr is not None:
        knobs += _fl("lr", f.lr[0], f.lr[1], (f.lr[0] * f.lr[1]) ** 0.5, log=True)
    return knobs


def _layer_names(wanted, layers: dict, where: str) -> list[str]:
    unknown = sorted(set(wanted) - set(layers))
    if unknown:
        raise ConfigError(f"{where}: {unknown} are not Linear/Conv layers of the model; layers are {sorted(layers)}")
    return list(wanted) or list(layers)


def _quantized_layers(info: dict, space: SearchSpace) -> list[str]:
    """Layers that get their own bits: those no block removal can take away
    (a removed block's layers are not there to name when weights are shared)."""
    blocks = info["blocks"] if space.structured.enabled and space.structured.max_blocks > 0 else []
    return [n for n in info["layers"] if not any(n.startswith(b + ".") for b in blocks)]


def sample(trial, knobs: list[Knob]) -> dict:
    """Draw every knob whose condition holds from an Optuna trial (fixed
    values of an enqueued trial come back as given)."""
    out: dict = {}
    for k in knobs:
        if k.when is not None and out.get(k.when[0], _fixed_default(knobs, k.when[0])) != k.when[1]:
            continue
        if k.kind == "float":
            out[k.name] = trial.suggest_float(k.name, k.low, k.high, log=k.log)
        elif k.kind == "int":
            out[k.name] = trial.suggest_int(k.name, int(k.low), int(k.high))
        else:
            out[k.name] = trial.suggest_categorical(k.name, list(k.choices))
    return out


def _fixed_default(knobs: list[Knob], name: str):
    for k in knobs:
        if k.name == name:
            return k.default
    return None


def knob_defaults(knobs: list[Knob], **overrides) -> dict:
    """Every knob at its default (the dense end of pruning ranges, the most
    bits, the largest fine-tune budget), with ``overrides``: the fixed part
    of a trial a strategy proposes (it sets the structure, the rest is the
    same for all its proposals)."""
    out = {}
    for k in knobs:
        if k.when is not None and {**out, **overrides}.get(k.when[0], _fixed_default(knobs, k.when[0])) != k.when[1]:
            continue
        out[k.name] = overrides.get(k.name, k.default)
    unknown = sorted(set(overrides) - {k.name for k in knobs})
    if unknown:
        raise ConfigError(f"proposed values for {unknown}, which are not knobs of this search")
    return out


def trial_stages(params: dict, space: SearchSpace, info: dict, *, strategy: str, finetune, latency) -> tuple[
        list[dict], dict | None]:
    """(recipe stages, recipe-level distill settings or None) of one trial.
    ``finetune`` is the TrainConfig template; ``latency`` the LatencySpec
    (the greedy strategy times candidates with it)."""
    def val(name, fixed):
        return params.get(name, fixed)

    stages: list[dict] = []
    s = space.structured
    blocks = int(val("blocks", 0))
    if strategy == "greedy":
        speed = float(val("greedy.speedup", space.greedy.speedup[0]))
        stages.append({"name": "greedy", "kind": "prune.structured", "target": "latency", "allocation": "greedy",
                       "ratio": 1.0 - 1.0 / speed, "blocks": blocks, "importance": space.greedy.importance,
                       "greedy_steps": list(space.greedy.steps), "latency_runtime": latency.runtime,
                       "latency_batch_sizes": list(latency.batch_sizes), "latency_threads": latency.threads,
                       "recalibrate_bn": s.recalibrate_bn})
    elif s.enabled:
        keep = {k[len("keep."):]: float(v) for k, v in params.items() if k.startswith("keep.")}
        if blocks or any(v < 1.0 for v in keep.values()):
            stages.append({"name": "structured", "kind": "auto.structured", "keep": keep, "blocks": blocks,
                           "importance": s.importance, "round_to": s.round_to, "recalibrate_bn": s.recalibrate_bn,
                           "strict": False})
    decomposed = set()
    if space.lowrank.enabled:
        for k, v in params.items():
            if k.startswith("rank.") and float(v) < space.lowrank.off_above:
                layer = k[len("rank."):]
                decomposed.add(layer)
                stages.append({"name": f"lowrank-{layer}", "kind": "decompose.svd", "keep": float(v),
                               "scope": {"names": [layer]}})
    ft = finetune.replace(epochs=int(val("epochs", space.finetune.epochs[1])),
                          lr=float(val("lr", finetune.lr))).to_dict()
    u = space.unstructured
    if u.enabled:
        sparsity = {k[len("density."):]: round(1.0 - float(v), 6) for k, v in params.items()
                    if k.startswith("density.") and k[len("density."):] not in decomposed}
        fixed = {n: 1.0 - r[0] for n, r in u.densities.items() if r[0] == r[1] and n not in decomposed}
        sparsity = {**fixed, **sparsity}
        stages.append({"name": "agp", "kind": "auto.agp", "sparsity": 0.0, "ranking": "layer",
                       "layer_sparsity": {k: v for k, v in sparsity.items() if v > 0}, "start": 0.0, "end": u.end,
                       "frequency": u.frequency, "finetune": ft, "permanent": True, "unused_units": u.remove_dead,
                       "remove_dead": u.remove_dead})
    elif ft["epochs"] > 0:
        stages.append({"name": "finetune", "kind": "auto.finetune", **ft})
    q = space.quantize
    if q.enabled:
        bits = int(val("bits", q.bits[1]))
        layer_bits = {k[len("bits."):]: int(v) for k, v in params.items()
                      if k.startswith("bits.") and k[len("bits."):] not in decomposed}
        if q.per_layer and q.bits[0] == q.bits[1]:
            layer_bits = {}
        epochs = int(val("kmeans_epochs", q.epochs[1]))
        kft = finetune.replace(epochs=epochs, lr=q.lr).to_dict() if epochs > 0 else None
        stage = {"name": "cluster", "kind": "quantize.kmeans", "bits": bits, "layer_bits": layer_bits,
                 "finetune": kft}
        if q.bias_bits is not None:
            stage["bias_bits"] = int(val("bias_bits", q.bias_bits[1]))
        stages.append(stage)
    if space.encode:
        stages.append({"name": "encode", "kind": "codec.encode", "huffman": True, "fp16": True})
    if not stages:
        stages.append({"name": "finetune", "kind": "auto.finetune", **{**ft, "epochs": 0}})
    distill = None
    d = space.distill
    on = bool(val("distill", d.choices[0] if len(d.choices) == 1 else True in d.choices))
    if on:
        t = float(val("temperature", d.temperature[0] if d.temperature[0] == d.temperature[1] else
                      min(max(4.0, d.temperature[0]), d.temperature[1])))
        distill = {"temperature": t, "alpha": d.alpha}
    return stages, distill
