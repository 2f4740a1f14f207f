"""The trials a strategy proposes before (or instead of) sampling, computed
once per study from the baseline and cheap proxies: greedy speedup targets,
the AMC agent's best episodes, warm starts from a sensitivity scan or uniform
cuts. Each is ``(params, strategy label)``."""
from __future__ import annotations

from typing import Callable

from .strategies import amc_proposals, density_seeds, greedy_proposals, uniform_seeds

__all__: list[str] = []  # internal: import from the module


def make_proposals(setup, *, log: Callable[[str], None] = lambda m: None) -> list[tuple[dict, str]]:
    cfg, knobs = setup.cfg, setup.knobs
    if cfg.strategy == "greedy":
        return [(p, "greedy") for p in greedy_proposals(knobs, cfg.n_trials)]
    if cfg.strategy == "amc":
        props = amc_episodes(setup, log=log)
        return [(p, "amc") for p in props]
    if cfg.seeds <= 0:
        return []
    out: list[tuple[dict, str]] = []
    space = setup.space
    if space.structured.enabled and any(k.name.startswith("keep.") for k in knobs):
        lo = space.structured.min_keep
        levels = [1.0 - (1.0 - lo) * (i + 1) / (cfg.seeds + 1) for i in range(cfg.seeds)]
        out += [(p, "seed:uniform") for p in uniform_seeds(knobs, levels)]
    if space.unstructured.enabled and any(k.name.startswith("density.") for k in knobs):
        from .proxies import sensitivity_seeds

        layers = [k.name[len("density."):] for k in knobs if k.name.startswith("density.")]
        lo = min(k.low for k in knobs if k.name.startswith("density."))
        top = min(0.99, 1.0 - 2 * lo)
        first = 0.9
        bound = cfg.constraints.get("bytes")
        if bound is not None:  # start where the bytes bound is about met: ~8 bits a kept weight, 32 a dense one
            first = min(top, max(0.5, 1.0 - 4.0 * bound.bound / setup.baseline["fp32_bytes"]))
        targets = [first + (top - first) * i / max(1, cfg.seeds - 1) for i in range(cfg.seeds)]
        model = setup.load_baseline()
        log(f"sensitivity scan of {len(layers)} layers on the holdout (warm starts at sparsities "
            f"{', '.join(f'{t:.3f}' for t in targets)})")
        allocs = sensitivity_seeds(model, setup.proxy_holdout, targets, layers=layers)
        out += [(p, "seed:sensitivity") for p in density_seeds(knobs, allocs)]
    return out[: cfg.n_trials]


def amc_episodes(setup, *, log: Callable[[str], None] = lambda m: None) -> list[dict]:
    """Train the AMC agent on the proxies; its best distinct episodes as proposals."""
    from .amc import LayerEnv, run_agent
    from .proxies import predicted_relative_latency, proxy_accuracy

    cfg, knobs, spec = setup.cfg, setup.knobs, setup.cfg.amc
    model = setup.load_baseline()
    data = setup.proxy_holdout
    groups = [k.name[len("keep."):] for k in knobs if k.name.startswith("keep.")]
    layers = [k.name[len("density."):] for k in knobs if k.name.startswith("density.")]
    if groups:
        from ..prune.structured.plan import structured_plan
        from .stages import group_key, keep_count

        s = setup.space.structured
        plan = structured_plan(model, setup.example_inputs, importance=s.importance, round_to=s.round_to,
                               calib_data=setup.splits[1])
        by_key = {group_key(g): g for g in plan.groups}
        a_max = 1.0 - s.min_keep
        table = setup.latency_table
        target = spec.target
        bound = cfg.constraints.get("speedup")
        if target is None:  # the speedup bound, with the proxies' margin (the table's sum is optimistic)
            target = 1.0 / (bound.bound * (1.0 + cfg.proxy_slack)) if bound is not None else 0.5
        if table is not None:
            def cost_of(g):
                return lambda a: -(1.0 - predicted_relative_latency(table, {g: 1.0 - a}))
            costs, base, what = [cost_of(g) for g in groups], 1.0, "predicted time"
        else:  # no table: MACs as the resource
            total = sum(by_key[g].size for g in groups)
            costs = [(lambda a, n=by_key[g].size: n * (1.0 - a) / total) for g in groups]
            base, what = 0.0, "channels"
        lowest = base + sum(c(a_max) for c in costs)
        if target < lowest:
            log(f"amc: the target {target:.3f} of the {what} is out of reach (at most {lowest:.3f}); using it")
            target = lowest

        def reward(actions):
            keep = {by_key[g].id: keep_count(by_key[g].size, 1.0 - a, s.round_to, by_key[g].kind)
                    for g, a in zip(groups, actions)}
            full = {g.id: g.size for g in plan.groups}
            pruned = plan.apply({**full, **keep})
            return proxy_accuracy(pruned, data, recalibrate=4, recalib_data=setup.splits[0])

        env = LayerEnv(costs, reward, target=target, a_max=a_max, base=base)
        log(f"amc: {spec.episodes} episodes over {len(groups)} channel groups, keeping <= {target:.3f} of the {what}")
        episodes, _ = run_agent(env, spec, log=log)
        return amc_proposals(knobs, episodes, groups, cfg.n_trials, prefix="keep.", to_value=lambda a: 1.0 - a)
    if layers:
        import copy

        from ..prune import masks
        from ..prune.unstructured import prune_to_sparsity

        sizes = {n: setup.info["layers"][n]["params"] for n in layers}
        total = sum(sizes.values())
        lo = {n: next(k.low for k in knobs if k.name == f"density.{n}") for n in layers}
        a_max = 1.0 - min(lo.values())
        target = spec.target
        if target is None:
            bound = cfg.constraints.get("bytes")
            # ~8 bits per kept weight (shared value + sparse index) against 32 of the dense weights
            target = min(1.0, 4.0 * bound.bound / setup.baseline["fp32_bytes"]) if bound is not None else 0.1
        costs = [(lambda a, n=n: sizes[n] * (1.0 - a) / total) for n in layers]
        target = max(target, sum(c(a_max) for c in costs))

        def reward(actions):
            m = copy.deepcopy(model)
            prune_to_sparsity(m, 0.0, ranking="layer", layer_amounts={n: min(a, 1.0 - lo[n])
                                                                      for n, a in zip(layers, actions)})
            return proxy_accuracy(masks.remove(m), data)

        env = LayerEnv(costs, reward, target=target, a_max=a_max)
        log(f"amc: {spec.episodes} episodes over {len(layers)} layers, keeping <= {target:.4f} of the weights")
        episodes, _ = run_agent(env, spec, log=log)
        return amc_proposals(knobs, episodes, layers, cfg.n_trials, prefix="density.", to_value=lambda a: 1.0 - a)
    return []
