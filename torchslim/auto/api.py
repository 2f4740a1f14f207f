"""``torchslim.auto.auto``: compress a model to the user's target automatically.

```python
from torchslim.auto import auto
from torchslim.train import TrainConfig

result = auto("lenet5", dataset="mnist", train=TrainConfig(epochs=20, shift=2),   # or a trained model / artifact
              objectives=("bytes", "accuracy"), budget="max_drop=0.1,bytes<=10k",
              out="runs/auto-lenet5", n_trials=30)            # storage: sqlite:///runs/auto-lenet5/study.db
for p in result.front:                                        # the Pareto front within the budget
    print(p["trial"], p["values"], p["artifact"])              # every point: an artifact + its report.json
small = result.load(result.best("bytes"))
```

The same search runs from the command line (``torchslim auto``), as a recipe
stage (``kind: auto.search``) and in several processes at once: every call
with the same ``out`` (and ``storage``) joins the same study; ``workers=N``
starts N - 1 more worker processes here. A killed search resumes when rerun.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..core.config import register_handler
from ..core.errors import ConfigError
from .configs import AutoConfig

__all__ = ["auto", "AutoResult", "join"]


@dataclasses.dataclass
class AutoResult:
    """A finished search: ``out`` (its folder) and ``data`` (front.json)."""

    out: Path
    data: dict

    @property
    def front(self) -> list[dict]:
        """The Pareto front within the budget, sorted by the first objective."""
        return list(self.data.get("front", []))

    def best(self, objective: str | None = None) -> dict | None:
        """The front point best in ``objective`` (default: the first), or None."""
        objectives = self.data["objectives"]
        objective = objective or objectives[0]
        if objective not in objectives:
            raise ConfigError(f"best: {objective!r} is not an objective of this search ({objectives})")
        sign = 1 if self.data["directions"][objectives.index(objective)] == "minimize" else -1
        pts = self.front
        return min(pts, key=lambda p: sign * p["values"][objective]) if pts else None

    def artifact(self, point: dict) -> Path:
        return self.out / point["artifact"]

    def load(self, point: dict):
        from ..artifact import load

        return load(self.artifact(point))


def data_spec(dataset=None, data=None):
    """A DataSpec from ``data`` (a DataSpec or a mapping) or a data set name."""
    from ..recipe.schema import DataSpec

    if data is not None and dataset is not None:
        raise ConfigError("auto: give dataset or data, not both")
    if data is None:
        if dataset is None:
            raise ConfigError("auto: dataset is missing; give a data set name or path (or data={...})")
        return DataSpec(dataset=dataset)
    if isinstance(data, DataSpec):
        return data
    if isinstance(data, dict):
        return DataSpec.from_dict(data, where="data")
    raise ConfigError(f"auto: data must be a mapping of DataSpec fields, got {data!r}")


def _config(config: AutoConfig | dict | None, options: dict) -> AutoConfig:
    if config is None:
        return AutoConfig.from_dict(options, where="auto")
    if isinstance(config, dict):
        config = AutoConfig.from_dict(config, where="auto")
    return config.replace(**options) if options else config


def auto(model, *, dataset=None, data=None, out, config: AutoConfig | dict | None = None, train=None,
         workers: int = 1, progress: bool = True, **options: Any) -> AutoResult:
    """Search compressed versions of ``model`` (a trained nn.Module, an
    artifact path, a zoo name or any model spec; with ``train``, a
    TrainConfig, it is trained first in ``out/baseline``) on ``dataset`` (or
    ``data``: DataSpec fields; the holdout split judges accuracy), and return
    the Pareto front of the trials within the budget.

    Every AutoConfig field may be given as a keyword (``objectives``,
    ``budget``, ``strategy``, ``n_trials``, ``storage``, ``space``, ...) or
    in ``config``. ``workers``: run that many worker processes on this machine
    (this one included). Results: ``out/front.json``, ``out/report.html``,
    ``out/trials/NNNN/`` (a recipe run each) and the study in ``out/study.db``
    (``optuna-dashboard sqlite:///out/study.db``)."""
    if options.get("budget") is not None and not isinstance(options["budget"], str):
        options["budget"] = getattr(options["budget"], "text", options["budget"])  # a Budget
    cfg = _config(config, options)
    ds = data_spec(dataset, data)
    if workers < 1:
        raise ConfigError(f"auto: workers must be >= 1, got {workers}")
    out = Path(out)
    from .live import Display, make_display
    from .search import prepare, run_worker

    say = Display()
    if progress:
        from .live import LineDisplay

        say = LineDisplay(lambda: [], cfg.n_trials)
    setup = prepare(cfg, source=model, out=out, data=ds, train=train, log=say.log)
    _write_worker_file(out, cfg, ds)
    procs = _spawn(out, workers - 1)
    display = make_display(progress, _fetcher(setup), cfg.n_trials, list(cfg.objectives))
    deadline = time.time() + cfg.timeout if cfg.timeout else None
    try:
        run_worker(setup, display=display, log=display.log if progress else (lambda m: None), worker=0,
                   deadline=deadline)
    finally:
        display.close()
        bad = _wait(procs)
    if bad:
        raise RuntimeError(f"auto: worker process(es) failed: {bad}; see {out}/workers/*.log")
    from .front import read_front

    return AutoResult(out=out, data=read_front(out))


def _fetcher(setup):
    """``fetch() -> trial rows`` from the study (for the live table)."""
    state: dict = {}

    def fetch() -> list[dict]:
        import optuna

        from .front import trial_rows
        from .storage import open_storage

        if "study" not in state:
            storage = open_storage(setup.storage_url, heartbeat=setup.cfg.heartbeat, grace=setup.cfg.grace,
                                   max_retry=setup.cfg.max_retry)
            state["study"] = optuna.load_study(study_name=setup.cfg.study_name, storage=storage)
        return trial_rows(state["study"])

    return fetch


WORKER_FILE = "worker.json"


def _write_worker_file(out: Path, cfg: AutoConfig, data) -> None:
    from ..artifact import atomic_write_bytes

    atomic_write_bytes(out / WORKER_FILE, json.dumps({"config": cfg.to_dict(), "data": data.to_dict()},
                                                     indent=2).encode())


def _spawn(out: Path, n: int) -> list[tuple[subprocess.Popen, Path]]:
    import torch

    procs = []
    logs = out / "workers"
    logs.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        log = logs / f"worker-{i}.log"
        f = open(log, "ab")
        cmd = [sys.executable, "-m", "torchslim.auto", "worker", str(out), "--index", str(i),
               "--threads", str(torch.get_num_threads())]
        procs.append((subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ)), log))
        f.close()
    return procs


def _wait(procs) -> list[str]:
    bad = []
    for p, log in procs:
        if p.wait() != 0:
            bad.append(f"{log.name} (exit {p.returncode})")
    return bad


def join(out: str | Path, *, worker: int = 1, progress: bool = False) -> dict:
    """Run one more worker of the search prepared in ``out`` (by ``auto``)
    until its budget is spent; a summary of this worker's trials."""
    from .live import Display, LineDisplay
    from .search import prepare, run_worker

    out = Path(out)
    try:
        rec = json.loads((out / WORKER_FILE).read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{out}: no search to join here (no {WORKER_FILE}); start it with torchslim auto") from None
    cfg = AutoConfig.from_dict(rec["config"], where="worker")
    ds = data_spec(data=rec["data"])
    setup = prepare(cfg, source=None, out=out, data=ds)
    display = LineDisplay(lambda: [], cfg.n_trials) if progress else Display()
    deadline = time.time() + cfg.timeout if cfg.timeout else None
    return run_worker(setup, display=display, log=display.log if progress else print, worker=worker,
                      deadline=deadline)


# ---------------------------------------------------------------- the recipe stage
def _recipe_data(ctx):
    """The recipe's DataSpec (its resolved recipe.yaml in the run folder), else the context's data set."""
    from ..recipe.schema import DataSpec

    path = Path(ctx.out_dir) / "recipe.yaml" if ctx is not None and ctx.out_dir is not None else None
    if path is not None and path.is_file():
        import yaml

        raw = yaml.safe_load(path.read_text()) or {}
        if isinstance(raw.get("data"), dict):
            return DataSpec.from_dict(raw["data"], where="data")
    if ctx is None or ctx.dataset is None:
        raise ConfigError("auto.search: the stage needs the recipe's data (run it inside a recipe)")
    return DataSpec(dataset=ctx.dataset)


@register_handler(AutoConfig)
def _auto_stage(model, cfg: AutoConfig, ctx):
    """Search from the model entering the stage; continue with the front point
    best in ``cfg.pick`` (default the first objective)."""
    from ..core.errors import ModelError

    if ctx is None or (ctx.stage_out is None and ctx.out_dir is None):
        raise ConfigError("auto.search: the stage needs an output folder; run it inside a recipe")
    out = Path(ctx.stage_out or ctx.out_dir) / "search"
    result = auto(model, data=_recipe_data(ctx), out=out, config=cfg, progress=ctx.progress)
    point = result.best(cfg.pick)
    if point is None:
        raise ModelError(f"auto.search: no trial met the budget {cfg.budget!r} ({result.data.get('counts')}); "
                         f"see {out}/report.html; relax the budget or raise n_trials")
    from ..core.stage import StageResult

    return StageResult(result.load(point), artifact=result.artifact(point).resolve(),
                       records={"auto": {"folder": str(out), "front": len(result.front), "picked": point["trial"],
                                         "values": point["values"], "budget": cfg.budget,
                                         "counts": result.data.get("counts")}})
