"""``torchslim.nas.search``: once-for-all NAS under a measured latency budget,
end to end.

1. Build the elastic supernet of ``model`` (its largest subnet is ``model``)
   and train it with the sandwich rule (``sandwich.py``).
2. Build the per-layer latency table on the deployment runtime, scale it on
   the largest and smallest subnets measured whole, and validate it on
   random subnets measured whole (rank correlation, reported). The budget:
   ``speedup`` times faster than ``model`` (predicted speedup over the
   largest subnet), or ``budget_ms`` per batch size.
3. Search (evolution or TPE): candidates over budget by the table are never
   scored; the others are extracted, their BatchNorm statistics
   re-estimated, and scored on the holdout split.
4. Measure the best candidates whole, best first, until one meets the budget
   (against ``model`` in alternating pairs for a ``speedup`` budget).
5. Extract it as a plain model, recalibrate its BatchNorm, fine-tune it if
   asked.

With ``out_dir``, supernet training and fine-tuning checkpoint there, the
latency table and the search outcome are kept as JSON, and a rerun resumes
(a finished search whose final check failed is checked again, not rerun).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..core.errors import ConfigError
from .candidates import Candidate, SearchResult, confirm
from .configs import NASConfig
from .evolution import evolutionary_search
from .latency_table import LatencyTable
from .sandwich import train_supernet
from .scoring import SubnetScorer
from .supernet import ElasticSupernet
from .tpe import tpe_search

__all__ = ["search", "NASResult", "build_supernet", "latency_inputs"]


@dataclasses.dataclass
class NASResult:
    model: nn.Module  # the chosen subnet, plain layers (fine-tuned if asked)
    config: dict  # its subnet config
    supernet: ElasticSupernet
    search: SearchResult
    latency: dict  # source and budget milliseconds, proxy validation, the confirming measurement
    seconds: dict  # wall-clock time of each phase

    def summary(self) -> dict:
        """Everything but the models, as plain JSON data (no search history)."""
        s = self.search.to_dict()
        s.pop("history")
        return {"config": self.config, "search": s, "latency": self.latency, "seconds": self.seconds,
                "space": self.supernet.space.to_dict(), "space_size": self.supernet.space.size}


def build_supernet(model: nn.Module, config: NASConfig) -> ElasticSupernet:
    """The supernet ``config`` describes (untrained: ``model``'s weights)."""
    return ElasticSupernet(model, width_mults=config.width_mults, inner_mults=config.inner_mults,
                           kernel_sizes=config.kernel_sizes, elastic_depth=config.elastic_depth,
                           round_to=config.round_to, sort_channels=config.sort_channels)


def latency_inputs(example_inputs: tuple, batch_sizes) -> list[tuple]:
    """Random inputs shaped like ``example_inputs`` at each batch size (floats
    in [0, 1), seeded by the batch size)."""
    sets = []
    for b in batch_sizes:
        g = torch.Generator().manual_seed(int(b))
        sets.append(tuple(torch.rand(int(b), *x.shape[1:], generator=g, dtype=x.dtype) if x.is_floating_point()
                          else x[torch.arange(int(b)) % x.shape[0]] for x in example_inputs))
    return sets


def _fingerprint(config: NASConfig, extra: dict) -> str:
    """What decides the search's outcome: the config but its fine-tuning and
    the supernet training's checkpoint cadence, plus ``extra``."""
    d = config.changed()
    d.pop("finetune", None)
    if isinstance(d.get("supernet_train"), dict):
        for k in ("checkpoint_every_steps", "eval_every"):
            d["supernet_train"].pop(k, None)
    return hashlib.sha256(json.dumps([d, extra], sort_keys=True, default=str).encode()).hexdigest()[:16]


def _digest(model: nn.Module) -> str:
    """A hash of the model's tensors: a rerun into the same folder reuses a
    finished search only for the same source model."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()[:16]


def _read(path: Path | None) -> dict | None:
    try:
        return json.loads(path.read_text()) if path is not None and path.is_file() else None
    except ValueError:
        return None


def _write(path: Path | None, obj) -> None:
    if path is not None:
        from ..core.io import atomic_write_bytes

        atomic_write_bytes(path, json.dumps(obj, indent=1, default=str).encode())


def _say(log, progress: bool) -> Callable[[str], None]:
    if log is not None:
        return log
    if not progress:
        return lambda msg: None
    from tqdm.auto import tqdm

    return lambda msg: tqdm.write(f"[nas] {msg}")


def _latency_proxy(sn: ElasticSupernet, source: nn.Module, sets: list[tuple], cfg: NASConfig, out: Path | None,
                   say) -> tuple[LatencyTable, dict, Callable[[dict], float]]:
    """The latency table and the search's cost (predicted latency as a
    fraction of the budget, the worst batch size). The table is scaled on the
    largest and smallest subnets measured whole, validated (out of sample)
    on ``cfg.validate_proxy`` random subnets measured whole, then rescaled on
    all of them; its entries are kept in ``out``.

    A ``speedup`` budget is judged on the table alone, as the predicted
    speedup over the largest subnet (the source): a ratio of two predictions
    from the same entries, unaffected by the machine's speed drifting between
    the measurements that scale the table. A ``budget_ms`` budget compares
    the scaled prediction with the milliseconds."""
    from ..analysis.latency import time_fn

    table = LatencyTable(sn, sets, runtime=cfg.latency_runtime, threads=cfg.latency_threads,
                         repeats=cfg.latency_repeats)
    table_path = out / "latency_table.json" if out else None
    saved = _read(table_path)
    if saved:
        table.load_dict(saved)
    timer = time_fn(sets, runtime=cfg.latency_runtime, threads=cfg.latency_threads, repeats=cfg.latency_repeats)
    source_ms = [float(v) for v in timer(source)]
    ends = [sn.max_config(), sn.min_config()]
    end_ms = table.calibrate(ends)
    sp = cfg.speedups()
    budget_ms = list(cfg.budget_ms) if sp is None else [ms / s for ms, s in zip(source_ms, sp)]
    say(f"source {['%.3f' % v for v in source_ms]} ms, budget {['%.3f' % v for v in budget_ms]} ms "
        f"(batch {list(cfg.latency_batch_sizes)}, {cfg.latency_runtime})")
    validation = None
    if cfg.validate_proxy:
        g = torch.Generator().manual_seed(cfg.seed + 7919)
        val_cfgs = [sn.sample(g) for _ in range(cfg.validate_proxy)]
        val_ms = [table.measure(c) for c in val_cfgs]
        validation = table.validate(val_cfgs, val_ms)
        table.calibrate(ends + val_cfgs, end_ms + val_ms)
        say("latency proxy vs whole-subnet measurement, Spearman per batch size: "
            + ", ".join(f"b{v['batch_size']} {v['spearman']:.3f}" for v in validation["per_input_set"]))
    _write(table_path, table.to_dict())
    if sp is not None:
        # the source's predicted time: the largest subnet's, or (grown kernels) scaled by their measured ratio
        ratio = [1.0] * len(sets) if sn.largest_is_source else [s / m for s, m in zip(source_ms, end_ms[0])]
        ref = [r * q for r, q in zip(table.raw(ends[0]), ratio)]

        def cost(c: dict) -> float:
            return max(s * r / q for s, r, q in zip(sp, table.raw(c), ref))
    else:
        def cost(c: dict) -> float:
            return max(p / b for p, b in zip(table.predict(c), budget_ms))

    latency = {"runtime": cfg.latency_runtime, "threads": cfg.latency_threads or torch.get_num_threads(),
               "batch_sizes": list(cfg.latency_batch_sizes), "source_ms": source_ms, "budget_ms": budget_ms,
               "speedup_target": list(sp) if sp is not None else None, "largest_smallest_ms": end_ms,
               "proxy_scale": table.scale, "call_overhead_ms": table.overhead,
               "smallest_predicted_speedup": [q / r for q, r in zip(table.raw(ends[0]), table.raw(ends[1]))],
               "proxy_validation": validation}
    return table, latency, cost


def _checker(sn: ElasticSupernet, source: nn.Module, sets: list[tuple], cfg: NASConfig, budget_ms: list[float]):
    """``check(config) -> (meets budget, details)`` on the whole extracted
    subnet: a speedup budget against ``source`` in alternating pairs, on
    every batch size; a millisecond budget by the fastest calls."""
    from ..analysis.latency import speedup_fn, time_fn

    sp = cfg.speedups()
    if sp is not None:
        paired = [speedup_fn([x], runtime=cfg.latency_runtime, threads=cfg.latency_threads,
                             repeats=cfg.latency_repeats) for x in sets]

        def check(c: dict):
            sub = sn.extract(c)
            got = [float(f(source, sub)) for f in paired]
            return all(g >= s for g, s in zip(got, sp)), {
                "measured_speedup": got, "measured_cost": max(s / max(g, 1e-9) for g, s in zip(got, sp))}

        return check
    timer = time_fn(sets, runtime=cfg.latency_runtime, threads=cfg.latency_threads, repeats=cfg.latency_repeats)

    def check_ms(c: dict):
        ms = [float(v) for v in timer(sn.extract(c))]
        over = max(m / b for m, b in zip(ms, budget_ms))
        return over <= 1.0, {"measured_ms": ms, "measured_cost": over}

    return check_ms


def _restore(saved: dict) -> SearchResult:
    res = SearchResult(saved["algorithm"], saved["budget"])
    res.history = [Candidate(**c) for c in saved.get("history", [])]
    res.best = Candidate(**saved["best"]) if saved.get("best") else None
    res.confirmed = Candidate(**saved["confirmed"]) if saved.get("confirmed") else None
    res.confirmations = saved.get("confirmations", []) if res.confirmed is not None else []
    return res


def search(model: nn.Module, train_data, holdout, *, config: NASConfig | None = None,
           supernet: ElasticSupernet | None = None,
           example_inputs: tuple | None = None, bn_data=None, out_dir=None, progress: bool = True, loss_fn=None,
           score_fn: Callable[[dict], float] | None = None, log: Callable[[str], None] | None = None,
           **overrides) -> NASResult:
    """Search a subnet of ``model`` under a measured latency budget (see the
    module docstring). ``config`` (a ``NASConfig``; keyword ``overrides``
    replace its fields, e.g. ``speedup=1.6``). ``holdout``: labelled data
    held out of the training set, to score candidates (never the test split).
    ``supernet``: a supernet of ``model`` trained before (skips step 1).
    ``bn_data``: inputs for BatchNorm recalibration (default ``train_data``).
    ``score_fn``: replaces holdout accuracy (``fn(config) -> float``).
    ``loss_fn``: the fine-tuning loss (``fit``'s; default cross-entropy)."""
    from ..prune.recalibrate import recalibrate_bn
    from ..train import fit
    from ..zoo import example_inputs as zoo_inputs

    cfg = config or NASConfig()
    if not isinstance(cfg, NASConfig):
        raise ConfigError(f"search: config must be a NASConfig, got {type(cfg).__name__}")
    if overrides:
        cfg = cfg.replace(**overrides)
    say = _say(log, progress)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    seconds: dict = {}
    t0 = time.perf_counter()
    source = model.eval()
    sn = supernet if supernet is not None else build_supernet(model, cfg)
    if supernet is None and cfg.supernet_train is not None:
        say(f"training the supernet ({cfg.supernet_train.epochs} epoch(s), sandwich rule, "
            f"{cfg.random_subnets} random subnets per step)")
        train_supernet(sn, train_data, cfg.supernet_train, random_subnets=cfg.random_subnets,
                       temperature=cfg.distill_temperature, out_dir=out / "supernet" if out else None,
                       progress=progress)
    sn.eval()
    seconds["supernet"] = time.perf_counter() - t0

    # ---- a finished search (rerun into the same folder) ----------------------
    ex = tuple(example_inputs) if example_inputs is not None else tuple(zoo_inputs(source))
    sets = latency_inputs(ex, cfg.latency_batch_sizes)
    n_hold = min(cfg.holdout, len(holdout)) if holdout is not None else 0
    fp = _fingerprint(cfg, {"n_holdout": n_hold, "space": sn.space.to_dict(), "custom_score": score_fn is not None,
                            "source": _digest(source),
                            "inputs": [[list(t.shape) for t in st] for st in sets]})
    state_path = out / "search.json" if out else None
    saved = _read(state_path)
    if saved and saved.get("fingerprint") == fp and saved.get("history"):
        say(f"reusing the finished search in {state_path}")
        res, latency = _restore(saved), saved["latency"]
    else:
        t0 = time.perf_counter()
        table, latency, cost = _latency_proxy(sn, source, sets, cfg, out, say)
        seconds["latency_table"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        score = score_fn or SubnetScorer(sn, holdout.take(n_hold) if hasattr(holdout, "take") else holdout,
                                         bn_data if bn_data is not None else train_data, bn_batches=cfg.bn_batches)
        budget = 1.0 + cfg.proxy_margin
        if cfg.algorithm == "evolution":
            res = evolutionary_search(sn.space, score, cost, budget=budget, population=cfg.population,
                                      generations=cfg.generations, parents=cfg.parents, mutate_prob=cfg.mutate_prob,
                                      seed=cfg.seed, log=say)
        else:
            res = tpe_search(sn.space, score, cost, budget=budget, trials=cfg.trials, seed=cfg.seed, log=say)
        seconds["search"] = time.perf_counter() - t0
        latency["units_timed"] = len(table.entries)
        _write(state_path, {"fingerprint": fp, "latency": latency, **res.to_dict()})  # a failed check keeps it
    if res.confirmed is None:
        t0 = time.perf_counter()
        confirm(res, _checker(sn, source, sets, cfg, latency["budget_ms"]), top=cfg.confirm_top)
        seconds["confirm"] = time.perf_counter() - t0
        latency["confirmation"] = res.confirmations[-1]
        _write(state_path, {"fingerprint": fp, "latency": latency, **res.to_dict()})
    chosen = res.confirmed
    say(f"chosen subnet: holdout score {chosen.score:.4f}, proxy cost {chosen.cost:.3f} of the budget, measured "
        + ", ".join(f"{k} {v}" for k, v in latency["confirmation"].items() if k.startswith("measured")))

    # ---- the subnet ----------------------------------------------------------
    t0 = time.perf_counter()
    subnet = sn.extract(chosen.config)
    recalibrate_bn(subnet, bn_data if bn_data is not None else train_data, batches=cfg.bn_batches)
    if cfg.finetune is not None:
        # checkpoints per subnet: a changed search outcome never resumes another subnet's fine-tuning
        key = hashlib.sha256(json.dumps(chosen.config, sort_keys=True).encode()).hexdigest()[:10]
        fit(subnet, train_data, cfg.finetune, loss_fn=loss_fn, out_dir=out / f"finetune-{key}" if out else None,
            progress=progress)
    subnet.eval()
    seconds["finetune"] = time.perf_counter() - t0
    return NASResult(model=subnet, config=chosen.config, supernet=sn, search=res, latency=latency, seconds=seconds)
