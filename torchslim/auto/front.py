"""``DIR/front.json``: the Pareto front of the trials that meet the budget,
every point a real artifact on disk with its own recipe report, plus a
summary of every trial (for the plot and the table of ``DIR/report.html``).
Paths are relative to ``DIR``."""
from __future__ import annotations

import json
from pathlib import Path

from .objectives import directions
from .pareto import pareto_front

__all__ = ["read_front", "build_front", "write_front"]


def trial_rows(study, trials=None) -> list[dict]:
    """One plain record per counted trial (a dead trial's retry stands for it)."""
    from .storage import logical_trials

    objectives = list(study.user_attrs.get("objectives") or [])
    rows = []
    for t in logical_trials(trials if trials is not None else study.get_trials(deepcopy=False)):
        ua = t.user_attrs
        rows.append({
            "trial": t.number, "state": t.state.name, "strategy": ua.get("strategy"), "dir": ua.get("dir"),
            "values": dict(zip(objectives, t.values)) if t.values is not None else None,
            "feasible": ua.get("feasible"), "violations": ua.get("violations"), "metrics": ua.get("metrics"),
            "params": dict(t.params), "proxy": ua.get("proxy"), "pruned_by": ua.get("pruned_by"),
            "error": ua.get("error"), "seconds": ua.get("seconds"),
            "retry_of": t.system_attrs.get("failed_trial"),
        })
    return rows


def build_front(setup, study) -> dict:
    """The front (feasible, complete trials, non-dominated in the objectives)
    and every trial's summary."""
    from .storage import masked_url

    cfg = setup.cfg
    rows = trial_rows(study)
    done = [r for r in rows if r["state"] == "COMPLETE" and r["values"] is not None]
    feasible = [r for r in done if r["feasible"]]
    dirs = directions(cfg.objectives)
    idx = pareto_front([[r["values"][o] for o in cfg.objectives] for r in feasible], dirs)
    front = [feasible[i] for i in idx]
    first = cfg.objectives[0]
    front.sort(key=lambda r: r["values"][first] * (1 if dirs[0] == "minimize" else -1))
    points = []
    for r in front:
        m = r["metrics"] or {}
        folder = Path(r["dir"])
        points.append({
            "trial": r["trial"], "strategy": r["strategy"], "dir": str(folder),
            "artifact": str(folder / m.get("artifact", "model.safetensors")),
            "report": str(folder / "report.json"), "html": str(folder / "report.html"),
            "onnx": str(folder / "model.onnx") if (setup.out / folder / "model.onnx").is_file() else None,
            "values": r["values"], "metrics": m, "params": r["params"], "violations": r["violations"],
        })
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"].lower()] = counts.get(r["state"].lower(), 0) + 1
    return {
        "study": cfg.study_name, "storage": masked_url(setup.storage_url), "objectives": list(cfg.objectives),
        "directions": dirs, "budget": cfg.budget, "strategy": cfg.strategy, "n_trials": cfg.n_trials,
        "counts": counts, "feasible": len(feasible), "baseline": setup.baseline,
        "latency": cfg.latency_spec().to_dict() if cfg.wants_latency else None,
        "data": setup.data.to_dict(), "front": points, "trials": rows,
        "dashboard": f"optuna-dashboard {masked_url(setup.storage_url)}",
    }


def write_front(front: dict, out: str | Path, *, html: bool = True) -> Path:
    """``DIR/front.json`` and (``html``) ``DIR/report.html``; atomic writes."""
    from ..artifact import atomic_write_bytes

    out = Path(out)
    atomic_write_bytes(out / "front.json", json.dumps(front, indent=2, default=str).encode())
    if html:
        from .html import render_front_html

        atomic_write_bytes(out / "report.html", render_front_html(front).encode())
    return out / "front.json"


def read_front(path: str | Path) -> dict:
    """A search's front.json (``path`` is the file or the search folder)."""
    from ..core.errors import ConfigError

    p = Path(path)
    if p.is_dir():
        p = p / "front.json"
    if not p.is_file():
        raise ConfigError(f"{p}: no front.json here; run `torchslim auto MODEL --out DIR` first")
    return json.loads(p.read_text())
