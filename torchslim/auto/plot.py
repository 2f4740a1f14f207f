"""The front as a picture (PNG bytes): every finished trial, those meeting the
budget and those not told apart, the Pareto front joined as a staircase, the
baseline as a reference. Two objectives: one scatter; three: every pair; one:
the objective per trial with the best so far."""
from __future__ import annotations

import io

__all__ = ["plot_front"]

_LABELS = {"accuracy": "holdout accuracy (%)", "bytes": "artifact bytes (log)",
           "latency": "time / baseline time (worst batch)"}


def _baseline_value(front: dict, objective: str) -> float | None:
    b = front.get("baseline") or {}
    if objective == "accuracy" and b.get("holdout_accuracy") is not None:
        return 100.0 * b["holdout_accuracy"]
    if objective == "bytes":
        return b.get("size_bytes")
    if objective == "latency":
        return 1.0
    return None


def _pair(ax, front: dict, x: str, y: str) -> None:
    done = [r for r in front.get("trials", []) if r.get("values")]
    ok = [r for r in done if r.get("feasible")]
    bad = [r for r in done if not r.get("feasible")]
    if bad:
        ax.scatter([r["values"][x] for r in bad], [r["values"][y] for r in bad], marker="x", color="#bbbbbb",
                   label="outside the budget")
    if ok:
        ax.scatter([r["values"][x] for r in ok], [r["values"][y] for r in ok], color="#4c72b0", alpha=0.7,
                   label="within the budget")
    pts = sorted((p["values"][x], p["values"][y], p["trial"]) for p in front.get("front", []))
    if pts:
        ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", color="#dd5555", linewidth=1.2)
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="#dd5555", marker="*", s=120, zorder=3,
                   label="Pareto front")
        for px, py, n in pts:
            ax.annotate(str(n), (px, py), textcoords="offset points", xytext=(4, 4), fontsize=7)
    bx, by = _baseline_value(front, x), _baseline_value(front, y)
    if bx is not None and by is not None:
        ax.scatter([bx], [by], color="black", marker="s", label="baseline")
    if x == "bytes":
        ax.set_xscale("log")
    if y == "bytes":
        ax.set_yscale("log")
    ax.set_xlabel(_LABELS.get(x, x))
    ax.set_ylabel(_LABELS.get(y, y))
    ax.grid(alpha=0.3)


def plot_front(front: dict) -> bytes | None:
    """PNG of the search (None when no trial has finished)."""
    objectives = list(front.get("objectives") or [])
    if not any(r.get("values") for r in front.get("trials", [])):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(objectives) == 1:
        o = objectives[0]
        fig, ax = plt.subplots(figsize=(7, 4.2))
        done = sorted((r["trial"], r["values"][o], bool(r.get("feasible")))
                      for r in front["trials"] if r.get("values"))
        ax.scatter([d[0] for d in done if d[2]], [d[1] for d in done if d[2]], color="#4c72b0",
                   label="within the budget")
        ax.scatter([d[0] for d in done if not d[2]], [d[1] for d in done if not d[2]], color="#bbbbbb", marker="x",
                   label="outside the budget")
        best, line = None, []
        sign = 1 if (front.get("directions") or ["minimize"])[0] == "minimize" else -1
        for n, v, ok in done:
            if ok and (best is None or sign * v < sign * best):
                best = v
            line.append((n, best))
        if any(b is not None for _, b in line):
            ax.step([n for n, b in line if b is not None], [b for _, b in line if b is not None], where="post",
                    color="#dd5555", label="best within the budget")
        ax.set_xlabel("trial")
        ax.set_ylabel(_LABELS.get(o, o))
        if o == "bytes":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    else:
        pairs = [(objectives[i], objectives[j]) for i in range(len(objectives)) for j in range(i + 1, len(objectives))]
        fig, axes = plt.subplots(1, len(pairs), figsize=(6.5 * len(pairs), 4.5), squeeze=False)
        for ax, (x, y) in zip(axes[0], pairs):
            _pair(ax, front, x, y)
        axes[0][0].legend(fontsize="small")
    fig.suptitle(f"{front.get('study', 'search')}: {front.get('strategy')}; budget {front.get('budget') or 'none'}",
                 fontsize=10)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.13, top=0.88, wspace=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
