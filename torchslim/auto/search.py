"""The search engine: prepare once, then any number of workers run trials
from one Optuna study until the budget of trials is spent.

Preparation (under a lock in ``DIR``, so concurrent workers do it once):
``DIR/search.json`` (the settings every worker must share), the baseline
(``DIR/baseline``), the model's groups/layers/blocks (``model_info.json``),
the per-group latency table when latency matters (``proxies/``) and the
resolved knobs (``space.json``).

A worker loop: under the study lock, fail the trials whose process died
(they are re-queued), then ask for a trial if the budget allows (re-queued
and proposed trials first); run it with a heartbeat; tell the study. When
the budget is spent but trials are still running elsewhere, wait for them (a
dead one is re-queued and run here). Every finished trial rewrites
``DIR/front.json`` and ``DIR/report.html``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from ..core.errors import ConfigError
from .configs import AutoConfig
from .objectives import directions, objective_values
from .space import Knob, SearchSpace, resolve, sample, trial_stages
from .storage import (HOST, Heartbeat, default_url, logical_trials, masked_url, open_storage, original_number,
                      reap_dead_trials, study_lock)
from .trial import (folder_lock, measure_trial, read_record, recipe_hash, run_trial_recipe, trial_dir,
                    trial_recipe, write_record)

__all__: list[str] = []  # internal: import from the module

HOLDOUT_SUFFIX = ".holdout"  # the study holding each trial's per-epoch holdout accuracy, for the pruner


def _write_json(path: Path, obj) -> None:
    from ..artifact import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(obj, indent=2, default=str).encode())


def _dir_lock(out: Path):
    import contextlib
    import fcntl

    @contextlib.contextmanager
    def lock():
        out.mkdir(parents=True, exist_ok=True)
        with open(out / ".prepare.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    return lock()


@dataclasses.dataclass
class Setup:
    """Everything a worker needs, prepared once per search folder."""

    cfg: AutoConfig
    out: Path
    data: Any  # DataSpec
    splits: tuple  # (train, holdout, test)
    base_artifact: Path
    baseline: dict
    info: dict
    space: SearchSpace
    knobs: list[Knob]
    example_inputs: tuple
    latency_table: dict | None
    storage_url: str

    @property
    def proxy_holdout(self):
        hold = self.splits[1]
        return hold.take(self.cfg.amc.proxy_examples) if len(hold) > self.cfg.amc.proxy_examples else hold

    def load_baseline(self):
        from ..artifact import load

        return load(self.base_artifact).eval()


def prepare(cfg: AutoConfig, *, source, out: Path, data, train=None, log: Callable[[str], None] = print) -> Setup:
    """Check or record the search's settings, prepare the baseline, the model
    description, the proxies and the knobs (each once; later calls read them)."""
    import torch

    from .baseline import load_splits, measure_baseline, prepare_baseline, source_spec
    from .info import model_info

    out = Path(out)
    url = cfg.storage or default_url(out)
    joining = source is None  # a worker joining a search another process prepared
    splits = load_splits(data)  # outside the lock: workers load their data at the same time
    with _dir_lock(out):
        path = out / "search.json"
        if joining:
            try:
                old = json.loads(path.read_text())
                base_rec = json.loads((out / "baseline" / "baseline.json").read_text())
            except (OSError, ValueError):
                raise ConfigError(f"{out}: no prepared search to join (search.json or baseline/baseline.json "
                                  "is missing)") from None
            record = {"config": cfg.comparable(), "data": data.to_dict(), "model": old.get("model"),
                      "train": old.get("train")}
            source = {"artifact": base_rec["artifact"]}
            train = None
        else:
            record = {"config": cfg.comparable(), "data": data.to_dict(), "model": source_spec(source),
                      "train": train.to_dict() if train is not None else None}
        if path.is_file():
            old = json.loads(path.read_text())
            old_rec = {k: old.get(k) for k in record}
            if json.loads(json.dumps(old_rec, default=str)) != json.loads(json.dumps(record, default=str)):
                diff = _diff(old_rec, json.loads(json.dumps(record, default=str)))
                raise ConfigError(f"{out}: this folder holds a search with other settings ({', '.join(diff)}); "
                                  "use another --out folder, or rerun with the same settings to resume "
                                  "(n_trials, timeout and workers may change)")
        else:
            _write_json(path, {**record, "storage": masked_url(url), "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        torch.manual_seed(cfg.seed)
        base = prepare_baseline(source, out=out, data=data, train=train, seed=cfg.seed, progress=False)
        lat = cfg.latency_spec() if cfg.wants_latency else None
        baseline = measure_baseline(base, out=out, data=data, splits=splits, latency_spec=lat)
        from ..artifact import load
        from ..zoo import example_inputs

        model = load(base).eval()
        inputs = tuple(example_inputs(model, data.dataset))
        info_path = out / "model_info.json"
        if info_path.is_file():
            info = json.loads(info_path.read_text())
        else:
            info = model_info(model, inputs)
            _write_json(info_path, info)
        space = cfg.resolved_space()
        table = None
        table_path = out / "proxies" / "latency_table.json"
        if cfg.proxies and cfg.wants_latency and space.structured.enabled and cfg.strategy != "greedy" \
                and info["groups"]:
            if table_path.is_file():
                table = json.loads(table_path.read_text())
            else:
                log(f"measuring the per-group latency table ({len(info['groups'])} groups, {lat.runtime}, "
                    f"{lat.threads} thread(s), batch {', '.join(map(str, lat.batch_sizes))})")
                from .proxies import latency_table

                keeps = sorted({0.5, space.structured.min_keep}, reverse=True)
                table = latency_table(model, inputs, lat, keeps=keeps, round_to=space.structured.round_to)
                table_path.parent.mkdir(parents=True, exist_ok=True)
                _write_json(table_path, table)
        space_path = out / "space.json"
        if space_path.is_file():
            knobs = [Knob.from_dict(k) for k in json.loads(space_path.read_text())["knobs"]]
        else:
            frozen = set()
            if table is not None:
                from .proxies import frozen_groups

                frozen = frozen_groups(table, space.structured.min_saving)
                if frozen:
                    log(f"not searching {len(frozen)} group(s) whose cuts save no measured time: "
                        f"{', '.join(sorted(frozen))}")
            floors = None
            u = space.unstructured
            if cfg.proxies and u.enabled and u.max_oneshot_drop is not None:
                from .proxies import density_floors

                hold = splits[1].take(min(len(splits[1]), 2000))
                layers = [n for n in (u.layers or info["layers"]) if n not in u.densities]
                floors, scan = density_floors(model, hold, layers=layers, max_drop=u.max_oneshot_drop)
                (out / "proxies").mkdir(parents=True, exist_ok=True)
                _write_json(out / "proxies" / "sensitivity.json", {"floors": floors, "scan": scan})
                log("density ranges from the one-shot sensitivity scan: "
                    + ", ".join(f"{n} >= {f:.3g}" for n, f in floors.items()))
            knobs = resolve(space, info, strategy=cfg.strategy, frozen_groups=frozen, density_floors=floors)
            if not knobs:
                raise ConfigError("the search space has no knob for this model (no channel group, layer or setting "
                                  "to search); enable other families in space, or widen their ranges")
            _write_json(space_path, {"knobs": [k.to_dict() for k in knobs], "frozen_groups": sorted(frozen),
                                     "space": space.to_dict()})
        _create_studies(cfg, url)  # the database's tables and studies exist before any worker opens them
    return Setup(cfg=cfg, out=out, data=data, splits=splits, base_artifact=base, baseline=baseline, info=info,
                 space=space, knobs=knobs, example_inputs=inputs, latency_table=table, storage_url=url)


def _create_studies(cfg: AutoConfig, url: str) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url, heartbeat=cfg.heartbeat, grace=cfg.grace, max_retry=cfg.max_retry)
    optuna.create_study(storage=storage, study_name=cfg.study_name, load_if_exists=True,
                        directions=directions(cfg.objectives))
    if cfg.pruner != "none":
        optuna.create_study(storage=storage, study_name=cfg.study_name + HOLDOUT_SUFFIX, load_if_exists=True,
                            direction="maximize")
    storage.engine.dispose()


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out or ["?"]


def _pruner(setup: Setup):
    import optuna

    cfg = setup.cfg
    kind = cfg.pruner
    floor = _accuracy_floor(setup)
    if kind == "auto":
        kind = "threshold" if floor is not None else "median"
    if kind == "none":
        return None, None
    if kind == "threshold":
        if floor is None:
            raise ConfigError("AutoConfig.pruner: 'threshold' needs an accuracy bound in the budget (max_drop=X or "
                              "accuracy>=X); use 'median' or 'none'")
        return optuna.pruners.ThresholdPruner(lower=floor - cfg.prune_margin), floor - cfg.prune_margin
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(0, cfg.prune_warmup - 1)), None
    return optuna.pruners.HyperbandPruner(min_resource=max(1, cfg.prune_warmup),
                                          max_resource=max(1, setup.space.finetune.epochs[1])), None


def _accuracy_floor(setup: Setup) -> float | None:
    """The lowest holdout accuracy (percent) the budget allows, if it bounds it."""
    b = setup.cfg.constraints
    floors = []
    if b.get("drop") is not None:
        floors.append(100.0 * setup.baseline["holdout_accuracy"] - b.get("drop").bound)
    if b.get("accuracy") is not None:
        floors.append(b.get("accuracy").bound)
    return max(floors) if floors else None


def open_study(setup: Setup, *, seed_offset: int = 0):
    """(storage, study, holdout study or None) for this worker."""
    import optuna

    cfg = setup.cfg
    storage = open_storage(setup.storage_url, heartbeat=cfg.heartbeat, grace=cfg.grace, max_retry=cfg.max_retry)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with study_lock(storage, cfg.study_name, fallback_dir=setup.out):
        study = optuna.create_study(storage=storage, study_name=cfg.study_name, load_if_exists=True,
                                    directions=directions(cfg.objectives))
        n_existing = len(study.get_trials(deepcopy=False))
        from .strategies import make_sampler

        # the budget reaches the samplers as each trial's constraint values (Trial.set_constraint)
        study.sampler = make_sampler(cfg.strategy, seed=cfg.seed + n_existing + seed_offset,
                                     startup_trials=cfg.startup_trials, population=cfg.population)
        pruner, _ = _pruner(setup)
        holdout = None
        if pruner is not None:
            holdout = optuna.create_study(storage=storage, study_name=cfg.study_name + HOLDOUT_SUFFIX,
                                          load_if_exists=True, direction="maximize", pruner=pruner)
        if study.user_attrs.get("objectives") is None:
            study.set_user_attr("objectives", list(cfg.objectives))
            study.set_user_attr("budget", cfg.budget)
            study.set_user_attr("strategy", cfg.strategy)
            study.set_user_attr("folder", str(setup.out.resolve()))
    return storage, study, holdout


def enqueue_proposals(setup: Setup, storage, study, *, log: Callable[[str], None]) -> int:
    """Enqueue the strategy's proposals once per study; how many."""
    with study_lock(storage, setup.cfg.study_name, fallback_dir=setup.out):
        if study.user_attrs.get("proposals_done"):
            return 0
        from .proposals import make_proposals

        props = make_proposals(setup, log=log)
        for params, label in props:
            study.enqueue_trial(params, user_attrs={"strategy": label}, skip_if_exists=False)
        study.set_user_attr("proposals_done", len(props))
        return len(props)


def _fail_holdout(storage, frozen) -> None:
    """Close the pruner's trial of a trial whose process died."""
    import optuna
    from optuna.trial import TrialState

    tid = frozen.user_attrs.get("holdout_trial_id")
    if tid is None:
        return
    try:
        storage.set_trial_state_values(int(tid), state=TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
        pass


def run_worker(setup: Setup, *, display=None, log: Callable[[str], None] = print, worker: int = 0,
               deadline: float | None = None) -> dict:
    """Run trials until the study's budget is spent; a summary of this worker's trials."""
    from optuna.trial import TrialState

    cfg = setup.cfg
    storage, study, holdout = open_study(setup, seed_offset=1000 * worker)
    enqueue_proposals(setup, storage, study, log=log)
    mine: list[int] = []
    last_html = time.time()
    grace = float(cfg.grace or 2 * cfg.heartbeat)
    while True:
        trial = None
        with study_lock(storage, cfg.study_name, fallback_dir=setup.out):
            dead = reap_dead_trials(study, storage, grace=grace, on_fail=lambda ft: _fail_holdout(storage, ft))
            if dead:
                log(f"re-queued trial(s) {dead}: their process died")
            trials = study.get_trials(deepcopy=False)
            counted = logical_trials(trials)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            late = deadline is not None and time.time() > deadline
            if not late and (waiting or len(counted) < cfg.n_trials):
                with warnings.catch_warnings():  # "heartbeat ... with Study.optimize": we beat ourselves
                    warnings.simplefilter("ignore", UserWarning)
                    trial = study.ask()
                storage.record_heartbeat(trial._trial_id)
                trial.set_user_attr("host", HOST)
                trial.set_user_attr("pid", os.getpid())
                trial.set_user_attr("worker", worker)
            running = [t for t in counted if t.state == TrialState.RUNNING]
        if display is not None:
            display.refresh()
        if trial is None:
            if late or not running:
                break
            time.sleep(min(2.0, cfg.heartbeat))
            continue
        import optuna

        with Heartbeat(storage, trial._trial_id, cfg.heartbeat):
            try:
                state = _run_one(setup, storage, study, holdout, trial, display=display, log=log)
            except optuna.exceptions.UpdateFinishedTrialError:  # its heartbeat went silent (a stopped process)
                log(f"trial {trial.number}: already failed and re-queued by another worker; its rerun counts")
                state = "FAIL"
        mine.append(trial.number)
        if display is not None:
            display.finished(trial.number, state)
        last_html = _write_outputs(setup, study, html=time.time() - last_html > HTML_EVERY, last=last_html)
    _write_outputs(setup, study, html=True, last=last_html)
    return {"worker": worker, "pid": os.getpid(), "trials": mine}


HTML_EVERY = 60.0  # seconds between redrawn report.html pages while a search runs (front.json: every trial)


def _write_outputs(setup: Setup, study, *, html: bool, last: float) -> float:
    """front.json, and report.html if ``html``; when report.html was last drawn."""
    from .front import build_front, write_front

    try:
        write_front(build_front(setup, study), setup.out, html=html)
    except Exception as e:  # noqa: BLE001 - a report that cannot be drawn must not stop the search
        warnings.warn(f"could not write {setup.out}/front.json: {e}", stacklevel=2)
    return time.time() if html else last


def _run_one(setup: Setup, storage, study, holdout, trial, *, display, log) -> str:
    """Run one trial to its end and tell the study; its final state's name."""
    import optuna
    from optuna.trial import TrialState

    cfg = setup.cfg
    sys_attrs = storage.get_trial_system_attrs(trial._trial_id)
    number = original_number(sys_attrs, trial.number)
    strategy = trial.user_attrs.get("strategy") or cfg.strategy
    trial.set_user_attr("strategy", strategy)
    folder = trial_dir(setup.out, number)
    trial.set_user_attr("dir", str(folder.relative_to(setup.out)))
    t0 = time.time()
    try:
        params = sample(trial, setup.knobs)
        stages, distill = trial_stages(params, setup.space, setup.info, strategy=cfg.strategy,
                                       finetune=cfg.finetune, latency=cfg.latency_spec())
        recipe = trial_recipe(stages=stages, distill=distill, base_artifact=setup.base_artifact, data=setup.data,
                              seed=cfg.seed, torch_latency=cfg.torch_latency, name=f"{cfg.study_name}-{number:04d}")
        rhash = recipe_hash(recipe)
        if display is not None:
            display.started(trial.number, strategy, params)
        with folder_lock(folder):
            rec = read_record(folder, rhash)
            if rec is None:
                proxy = _proxies(setup, study, stages, trial) if cfg.proxies else {}
                trial.set_user_attr("proxy", {k: v for k, v in proxy.items() if k != "pruned"})
                if proxy.get("pruned"):
                    trial.set_user_attr("pruned_by", proxy["pruned"])
                    for label, v in proxy.get("violations", {}).items():  # what the proxies already know
                        trial.set_constraint(label, v)
                    study.tell(trial, state=TrialState.PRUNED)
                    log(f"trial {trial.number}: stopped before fine-tuning: {proxy['pruned']}")
                    return "PRUNED"
                report = _run_recipe(setup, holdout, trial, recipe, folder)
                metrics = measure_trial(report, folder, baseline=setup.baseline,
                                        latency_spec=cfg.latency_spec() if cfg.wants_latency else None,
                                        dataset=setup.data.dataset)
                rec = {"trial": trial.number, "folder_trial": number, "strategy": strategy, "params": params,
                       "recipe_hash": rhash, "metrics": metrics, "proxy": proxy, "seconds": time.time() - t0}
                write_record(folder, rec)
        metrics = rec["metrics"]
        violations = cfg.constraints.violations(metrics)
        values = objective_values(cfg.objectives, metrics)
        trial.set_user_attr("metrics", metrics)
        trial.set_user_attr("violations", violations)
        for label, v in violations.items():
            trial.set_constraint(label, v)
        trial.set_user_attr("feasible", all(v <= 0 for v in violations.values()))
        trial.set_user_attr("seconds", time.time() - t0)
        study.tell(trial, values)
        return "COMPLETE"
    except optuna.TrialPruned as e:
        trial.set_user_attr("pruned_by", str(e) or "pruner")
        acc = getattr(e, "holdout_accuracy", None)
        if acc is not None:  # the accuracy bounds it already misses (recovery after the last report is small)
            known = {"holdout_accuracy": acc, "drop_points": 100.0 * (setup.baseline["holdout_accuracy"] - acc)}
            for c in cfg.constraints.constraints:
                if c.metric in ("drop", "accuracy"):
                    trial.set_constraint(c.label, c.violation(known))
            for label, v in ((trial.user_attrs.get("proxy") or {}).get("violations") or {}).items():
                trial.set_constraint(label, v)  # bytes and speed measured before the fine-tune
        trial.set_user_attr("seconds", time.time() - t0)
        study.tell(trial, state=TrialState.PRUNED)
        log(f"trial {trial.number}: pruned ({e})")
        return "PRUNED"
    except Exception as e:  # noqa: BLE001 - a failing configuration fails its trial, not the search
        import traceback

        trial.set_user_attr("error", f"{type(e).__name__}: {e}")
        trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
        study.tell(trial, state=TrialState.FAIL)
        log(f"trial {trial.number}: failed: {type(e).__name__}: {e}")
        return "FAIL"


def _run_recipe(setup: Setup, holdout, trial, recipe: dict, folder: Path) -> dict:
    """The recipe run, its fine-tune epochs reported to the pruner's study."""
    import optuna
    from optuna.trial import TrialState

    from .reporting import reporting

    if holdout is None:
        return run_trial_recipe(recipe, folder, html=setup.cfg.trial_html)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ht = holdout.ask()
    ht.set_user_attr("search_trial", trial.number)
    trial.set_user_attr("holdout_trial", ht.number)
    trial.set_user_attr("holdout_trial_id", ht._trial_id)
    step = [0]
    warm = setup.cfg.prune_warmup

    def listener(acc: float, epoch: int) -> None:
        ht.report(100.0 * acc, step[0])
        step[0] += 1
        if step[0] >= warm and ht.should_prune():
            e = optuna.TrialPruned(f"holdout accuracy {100 * acc:.2f}% after fine-tune epoch {epoch} "
                                   f"(report {step[0]})")
            e.holdout_accuracy = acc  # what is known of the trial: the samplers learn from it
            raise e

    try:
        with reporting(listener):
            report = run_trial_recipe(recipe, folder, html=setup.cfg.trial_html)
    except optuna.TrialPruned:
        holdout.tell(ht, state=TrialState.PRUNED)
        raise
    except BaseException:
        holdout.tell(ht, state=TrialState.FAIL)
        raise
    acc = report["final"].get("holdout_accuracy")
    holdout.tell(ht, 100.0 * acc if acc is not None else None,
                 state=TrialState.COMPLETE if acc is not None else TrialState.FAIL)
    return report


def _proxies(setup: Setup, study, stages: list[dict], trial) -> dict:
    """Before fine-tuning: the bytes the artifact will have and the speed of
    the pruned structure; ``pruned`` says why the trial should stop here (it
    cannot meet the budget, or even at the baseline's accuracy a finished
    trial dominates it)."""
    from .pareto import dominates
    from .proxies import bytes_estimate, structure_model

    cfg = setup.cfg
    slack = cfg.proxy_slack
    out: dict = {}
    b = cfg.constraints
    model = None
    if cfg.wants_bytes:
        model = setup.load_baseline()
        est = bytes_estimate(model, stages, setup.example_inputs, calib_data=setup.splits[1])
        if est is not None:
            out["size_bytes"] = est
            c = b.get("bytes")
            if c is not None:
                out.setdefault("violations", {})[c.label] = c.violation({"size_bytes": est})
            if c is not None and est > c.bound * (1 + slack):
                out["pruned"] = f"bytes proxy: {est:,} B before fine-tuning, budget {c.bound:,.0f} B"
                return out
    if cfg.wants_latency:
        model = model or setup.load_baseline()
        pruned = structure_model(model, stages, setup.example_inputs, calib_data=setup.splits[1])
        if pruned is not None and pruned is not model:
            from .timing import paired_latency

            spec = cfg.latency_spec()
            r = paired_latency(model, pruned, setup.example_inputs, spec.replace(repeats=max(10, spec.repeats // 2)),
                               baseline_onnx=setup.baseline.get("onnx") if spec.runtime == "onnxruntime" else None)
            out["speedup"] = r["speedup"]
            out["latency_ms"] = r["latency_ms"]
            for c in b.constraints:
                if c.metric in ("speedup", "latency"):
                    out.setdefault("violations", {})[c.label] = c.violation(r)
            for c in b.constraints:
                if c.metric in ("speedup", "latency") and c.violation(r) > slack:
                    out["pruned"] = f"structure proxy: {c.label} {c.value(r):.3g} before fine-tuning, budget {c.text}"
                    return out
    # optimistic objective vector: measured proxies (within the slack), the best conceivable accuracy
    optimistic = []
    for o in cfg.objectives:
        if o == "accuracy":
            optimistic.append(100.0)
        elif o == "bytes" and "size_bytes" in out:
            optimistic.append(out["size_bytes"] / (1 + slack))
        elif o == "latency" and "speedup" in out:
            optimistic.append(1.0 / (min(out["speedup"].values()) * (1 + slack)))
        else:
            return out
    dirs = directions(cfg.objectives)
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("feasible") and t.values is not None and dominates(t.values, optimistic, dirs):
            out["pruned"] = f"dominated by trial {t.number} even at the best conceivable accuracy"
            break
    return out
