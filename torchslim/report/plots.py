"""Report plots as PNG bytes (matplotlib, headless): accuracy vs size and
vs latency, per-layer sparsity and bits, weight histograms, sensitivity."""
from __future__ import annotations

import io

__all__ = ["plot_tradeoff", "plot_layers", "plot_histograms", "plot_sensitivity", "run_points"]


def pyplot():
    """matplotlib.pyplot with the Agg backend (no display)."""
    return _plt()


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig) -> bytes:
    """A figure as PNG bytes (closed after)."""
    return _png(fig)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def run_points(report: dict) -> list[dict]:
    """(label, metrics) of the baseline, every stage, and the final artifact."""
    pts = [{"label": "baseline", "metrics": report["baseline"]}]
    for s in report.get("stages", []):
        if s.get("metrics"):
            pts.append({"label": f"{s['index']}:{s['name']}", "metrics": s["metrics"]})
    pts.append({"label": "final", "metrics": report["final"]})
    merged: list[dict] = []  # a stage that changed nothing measurable shares its point with the one before
    def key(m):
        return (m.get("size_bytes"), m.get("accuracy"))

    for p in pts:
        if merged and key(merged[-1]["metrics"]) == key(p["metrics"]):
            merged[-1] = {"label": f"{merged[-1]['label']} = {p['label']}", "metrics": merged[-1]["metrics"]}
        else:
            merged.append(p)
    return merged


def plot_tradeoff(runs: dict[str, dict], x: str, *, xlabel: str, title: str) -> bytes | None:
    """Accuracy against ``x`` (e.g. size_bytes, latency_ms) for each run's
    baseline, stages and final artifact; one line per run."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    any_point = False
    for run, report in runs.items():
        pts = [(p["metrics"].get(x), p["metrics"].get("accuracy"), p["label"]) for p in run_points(report)]
        pts = [p for p in pts if p[0] and p[1] is not None]
        if not pts:
            continue
        any_point = True
        xs, ys = [p[0] for p in pts], [100 * p[1] for p in pts]
        ax.plot(xs, ys, marker="o", label=run if len(runs) > 1 else None)
        for xv, yv, lab in zip(xs, ys, [p[2] for p in pts]):
            ax.annotate(lab, (xv, yv), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if not any_point:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(runs) > 1:
        ax.legend(fontsize=8)
    return _png(fig)


def plot_layers(report: dict) -> bytes | None:
    """Per-layer sparsity and index bits of the baseline and the final model."""
    final = report["final"].get("layers") or []
    if not final:
        return None
    plt = _plt()
    names = [l["name"] for l in final]
    base = {l["name"]: l for l in report["baseline"].get("layers") or []}
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2 + 0.15 * len(names)))
    idx = range(len(names))
    a1.barh([i + 0.2 for i in idx], [100 * base.get(n, {}).get("sparsity", 0) for n in names], 0.4, label="baseline")
    a1.barh([i - 0.2 for i in idx], [100 * l["sparsity"] for l in final], 0.4, label="final")
    a1.set_yticks(list(idx), names, fontsize=8)
    a1.invert_yaxis()
    a1.set_xlabel("sparsity (%)")
    a1.set_xlim(0, 100)
    a1.legend(fontsize=8)
    a2.barh([i + 0.2 for i in idx], [base.get(n, {}).get("bits", 0) for n in names], 0.4, label="baseline")
    a2.barh([i - 0.2 for i in idx], [l["bits"] for l in final], 0.4, label="final")
    a2.set_yticks(list(idx), [""] * len(names))
    a2.invert_yaxis()
    a2.set_xlabel("bits per non-zero weight")
    fig.suptitle("per-layer sparsity and weight bits")
    return _png(fig)


def plot_histograms(report: dict) -> bytes | None:
    """Weights of the largest layer: baseline, after every stage (weight
    sharing shows as a few spikes), final."""
    panels = [("baseline", report["baseline"].get("histogram"))]
    panels += [(f"{s['index']}:{s['name']}", s.get("histogram")) for s in report.get("stages", [])]
    panels = [(t, h) for t, h in panels if h and h.get("counts")]
    if not panels:
        return None
    plt = _plt()
    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (title, h) in zip(axes.flat, panels):
        if h.get("values") is not None and len(h["values"]) <= 64:
            ax.vlines(h["values"], 0, h["value_counts"], color="C1")
            ax.set_title(f"{title}: {len(h['values'])} shared values", fontsize=9)
        else:
            edges = h["edges"]
            ax.stairs(h["counts"], edges, fill=True, alpha=0.7)
            ax.set_title(f"{title}: {h['nonzero']:,}/{h['params']:,} non-zero", fontsize=9)
        ax.set_yscale("symlog")
        ax.tick_params(labelsize=7)
    fig.suptitle(f"weights of layer {panels[0][1]['layer']} (zeros left out)")
    fig.tight_layout()
    return _png(fig)


def _curves(obj) -> dict[str, tuple[list, list]]:
    """Sensitivity data in either shape: {layer: {"x"/"sparsity": [...],
    "accuracy": [...]}} or {layer: [[x, accuracy], ...]}."""
    out = {}
    if not isinstance(obj, dict):
        return out
    for layer, v in obj.items():
        if isinstance(v, dict):
            xs = v.get("x") or v.get("sparsity") or v.get("amounts") or v.get("bits")
            ys = v.get("accuracy") or v.get("y")
            if xs and ys and len(xs) == len(ys):
                out[str(layer)] = (list(xs), list(ys))
        elif isinstance(v, (list, tuple)) and v and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in v):
            out[str(layer)] = ([p[0] for p in v], [p[1] for p in v])
    return out


def plot_sensitivity(report: dict) -> bytes | None:
    """Sensitivity curves recorded by a stage (``extras["sensitivity"]``)."""
    curves = {}
    for s in report.get("stages", []):
        curves.update(_curves((s.get("extras") or {}).get("sensitivity")))
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for layer, (xs, ys) in curves.items():
        ax.plot(xs, [100 * y if y <= 1 else y for y in ys], marker=".", label=layer)
    ax.set_xlabel("sparsity (or setting)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("per-layer sensitivity")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)
