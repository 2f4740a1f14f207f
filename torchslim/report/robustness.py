"""The robustness section of a report: tables and plots (PNG bytes,
matplotlib headless) from the dict of ``analysis.robustness.compare`` (or
``robustness`` for one model), and a self-contained HTML section with the
plots embedded as base64 data URIs like the rest of report.html.

    >>> html = render_robustness_section(compare(dense, compressed, ("mnist", "test")))
    >>> write_robustness_html(result, "robustness.html")     # a page of its own
"""
from __future__ import annotations

import html as _html
from pathlib import Path

__all__ = ["robustness_tables", "plot_corruptions", "plot_per_class", "plot_reliability", "plot_layer_restore",
           "render_robustness_section", "write_robustness_html"]


def _models(result: dict) -> list[str]:
    """The model keys of a result: ("original", "compressed") or ("model",)."""
    clean = result.get("clean") or {}
    return [m for m in ("original", "compressed", "model") if m in clean] or ["model"]


def _corruption_rows(result: dict) -> tuple[list, list]:
    models = _models(result)
    text = result.get("task") == "text"
    compared = "agreement" in result["clean"]
    cols = ["corruption", "severity"]
    if text:
        cols += [f"{m} retrieval" for m in models] + [f"{m} stability" for m in models]
        cols += ["NN agreement", "mean cosine"] if compared else []
    else:
        cols += [f"{m} accuracy" for m in models] + (["agreement"] if compared else [])

    def row(name, sev, get):
        if text:
            vals = [get(m, "retrieval") for m in models] + [get(m, "stability") for m in models]
            vals += [get("agreement", "nn_agreement"), get("agreement", "mean_cosine")] if compared else []
        else:
            vals = [get(m, None) for m in models] + ([get("agreement", None)] if compared else [])
        return [name, sev, *vals]

    clean = result["clean"]
    if text:
        rows = [row("clean", 0, lambda m, k: clean[m][k])]
    else:
        rows = [row("clean", 0, lambda m, k: clean["accuracy"] if m == "model" else clean[m])]
    for name, c in result.get("corruptions", {}).items():
        for i, s in enumerate(result["severities"]):
            if text:
                rows.append(row(name, s, lambda m, k: c[m][k][i]))
            else:
                rows.append(row(name, s, lambda m, k: c["accuracy"][i] if m == "model" else c[m][i]))
    return cols, rows


def robustness_tables(result: dict) -> list[tuple[str, list, list]]:
    """(title, columns, rows) tables, accuracies as fractions: summary (not
    for text), every corruption and severity, per-class accuracy, per-layer
    sensitivity (those the result holds)."""
    models = _models(result)
    tables = []
    if result.get("task") != "text":
        clean = result["clean"]
        cal = result.get("calibration") or {}
        cal = {"model": cal} if "ece" in cal else cal
        compared = "agreement" in clean
        summary = [["clean accuracy", *[clean["accuracy"] if m == "model" else clean[m] for m in models]]
                   + ([clean["agreement"]] if compared else [])]
        mc = result.get("mean_corrupted")
        if mc:
            summary.append(["mean accuracy under corruption", *[mc.get(m) for m in models], mc.get("agreement")])
        summary.append(["ECE (15 bins, clean)", *[cal.get(m, {}).get("ece") for m in models]]
                       + ([None] if compared else []))
        tables.append((f"robustness summary ({result['n']:,} examples, input {result.get('input')}, seed "
                       f"{result['seed']})", ["metric", *models, *(["agreement"] if compared else [])], summary))
    tables.append(("sentence embeddings under token corruption" if result.get("task") == "text" else
                   "accuracy under corruption", *_corruption_rows(result)))
    pc = result.get("per_class") or []
    if pc and "drop" in pc[0]:
        tables.append(("per-class accuracy, largest drop first", ["class", "n", "original", "compressed", "drop"],
                       [[r["class"], r["n"], r["original"], r["compressed"], r["drop"]] for r in pc]))
    elif pc:
        tables.append(("per-class accuracy", ["class", "n", "accuracy"],
                       [[r["class"], r["n"], r["accuracy"]] for r in pc]))
    sens = result.get("sensitivity") or {}
    rest = sens.get("restore")
    if rest:
        tables.append((f"per layer: accuracy on {rest.get('data')} with that layer alone restored to the original's "
                       f"weights (compressed {rest['compressed']:.4f}, original {rest['original']:.4f})",
                       ["layer", "type", "accuracy", "gain", "gap recovered", "status"],
                       [[r["layer"], r["type"], r["accuracy"], r["gain"], r["recovered"], r["status"]]
                        for r in rest["layers"]]))
    scan = sens.get("scan")
    if scan:
        tables.append((f"per layer: {scan['metric']} on {scan.get('data')} of the original with that layer alone "
                       f"magnitude-pruned (dense {scan['dense']:.4f})",
                       ["layer", "params", *[f"@{s:g}" for s in scan["sparsities"]]],
                       [[r["layer"], r["params"], *r["values"]] for r in scan["layers"]]))
    return tables


def _plt():
    from .plots import pyplot as plt

    return plt()


def _png(fig) -> bytes:
    from .plots import png_bytes as png

    return png(fig)


def _panels(result: dict) -> list[tuple[str, str, dict]]:
    """(title, y label, {series: values at severity 0, 1, ...}) of every panel."""
    models, clean, panels = _models(result), result["clean"], []
    for name, c in (result.get("corruptions") or {}).items():
        if result.get("task") == "text":
            for key, label in (("retrieval", "retrieval@1 (%)"), ("stability", "cosine to clean (%)")):
                series = {m: [clean[m][key], *c[m][key]] for m in models}
                if key == "retrieval" and "agreement" in c:
                    series["NN agreement"] = [clean["agreement"]["nn_agreement"], *c["agreement"]["nn_agreement"]]
                panels.append((f"{name}: {key}", label, series))
            continue
        series = {m: [clean["accuracy"], *c["accuracy"]] if m == "model" else [clean[m], *c[m]] for m in models}
        if "agreement" in c:
            series["agreement"] = [clean["agreement"], *c["agreement"]]
        panels.append((name, "accuracy (%)", series))
    return panels


def plot_corruptions(result: dict) -> bytes | None:
    """Accuracy (text: retrieval and cosine to the clean embedding) against
    severity, one panel per corruption, one line per model (agreement
    dotted); severity 0 is the clean value."""
    panels = _panels(result)
    if not panels:
        return None
    plt = _plt()
    text = result.get("task") == "text"
    sev = [0, *result["severities"]]
    cols = min(4, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.7 * rows), squeeze=False, sharey=not text)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (title, ylabel, series) in zip(axes.flat, panels):
        for i, (label, ys) in enumerate(series.items()):
            dotted = "agreement" in label
            ax.plot(sev, [100 * v for v in ys], marker="" if dotted else "o", ms=3, label=label,
                    ls=":" if dotted else "-", color="gray" if dotted else f"C{i}")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in axes[-1, :]:
        ax.set_xlabel("severity", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("robustness to corrupted inputs" + (" (token corruption)" if text else ""))
    fig.tight_layout()
    return _png(fig)


def plot_per_class(result: dict) -> bytes | None:
    """Bar chart of the per-class accuracy drop (points), largest first."""
    pc = result.get("per_class") or []
    if not pc or "drop" not in pc[0]:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(pc) + 1.5), 3.0))
    drops = [100 * r["drop"] for r in pc]
    ax.bar(range(len(pc)), drops, color=["C3" if d > 0 else "C2" for d in drops])
    ax.set_xticks(range(len(pc)), [str(r["class"]) for r in pc], fontsize=8)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("class (largest drop first)")
    ax.set_ylabel("accuracy drop (points)")
    ax.set_title("per-class cost of compression (original - compressed)")
    ax.grid(True, axis="y", alpha=0.3)
    return _png(fig)


def plot_reliability(result: dict) -> bytes | None:
    """Reliability diagram: accuracy per confidence bin against the diagonal, one panel per model."""
    cal = result.get("calibration") or {}
    cal = {"model": cal} if "ece" in cal else cal
    if not cal:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(cal), figsize=(3.6 * len(cal), 3.4), squeeze=False)
    for i, (ax, (m, c)) in enumerate(zip(axes.flat, cal.items())):
        edges = c["edges"]
        width = edges[1] - edges[0]
        lows = [e for e, a in zip(edges[:-1], c["accuracy"]) if a is not None]
        accs = [a for a in c["accuracy"] if a is not None]
        confs = [v for v in c["confidence"] if v is not None]
        ax.bar(lows, accs, width=width, align="edge", color=f"C{i}", alpha=0.75, edgecolor="black", lw=0.4,
               label="accuracy")
        ax.bar(lows, [cf - a for cf, a in zip(confs, accs)], bottom=accs, width=width, align="edge", fill=False,
               hatch="//", edgecolor="C3", lw=0.4, label="gap to confidence")
        ax.plot([0, 1], [0, 1], ls="--", color="gray")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top-1 softmax)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{m}: ECE {100 * c['ece']:.2f}%", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("reliability diagram (15 bins)")
    fig.tight_layout()
    return _png(fig)


def plot_layer_restore(result: dict) -> bytes | None:
    """Accuracy gain of restoring each layer alone (the restorable layers)."""
    rest = (result.get("sensitivity") or {}).get("restore") or {}
    layers = [r for r in rest.get("layers", []) if r.get("gain") is not None]
    if not layers:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 0.9 + 0.35 * len(layers)))
    ax.barh(range(len(layers)), [100 * r["gain"] for r in layers])
    ax.set_yticks(range(len(layers)), [r["layer"] for r in layers], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("accuracy gain when restored alone (points)")
    ax.set_title("per-layer cost of compression")
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)


def render_robustness_section(result: dict, *, title: str = "robustness") -> str:
    """A ``<section>`` of HTML (tables and embedded PNG plots) for ``result``."""
    from .html import img_html as _img, table_html as _table

    note = (f"corrupted copies of the {result['n']:,} inputs at severities {result['severities']} (seed "
            f"{result['seed']}); ")
    if result.get("task") == "text":
        note += ("retrieval: corrupted sentences whose nearest clean sentence (same model) is their own; "
                 "stability: mean cosine to their clean embedding.")
    else:
        note += (f"inputs clipped to {result.get('domain')}; agreement: top-1 class of the compressed model equals "
                 "the original's.")
    if result.get("skipped"):
        note += " Skipped: " + "; ".join(f"{k} ({v})" for k, v in result["skipped"].items()) + "."
    parts = [f"<section><h2>{_html.escape(title)}</h2><p class=\"note\">{_html.escape(note)}</p>"]
    tables = robustness_tables(result)
    parts.append(_table(*tables[0]))
    parts.append(_img(plot_corruptions(result), "accuracy vs severity per corruption"))
    parts.append(_img(plot_reliability(result), "reliability diagram"))
    parts.append(_img(plot_per_class(result), "per-class accuracy drop"))
    parts.append(_img(plot_layer_restore(result), "per-layer restore gain"))
    parts += [_table(*t) for t in tables[1:]]
    skipped = (result.get("sensitivity") or {}).get("skipped")
    if skipped:
        parts.append(f"<p class=\"note\">per-layer sensitivity skipped: {_html.escape(skipped)}</p>")
    parts.append("</section>")
    return "".join(parts)


def write_robustness_html(result: dict | dict[str, dict], path: str | Path, *, title: str = "torchslim: robustness"
                          ) -> Path:
    """A self-contained page of one result, or of several (``{name: result}``), one section each."""
    from ..artifact import atomic_write_bytes
    from .html import page_html as _page

    results = {"robustness": result} if "clean" in result else result
    body = f"<h1>{_html.escape(title)}</h1>" + "".join(render_robustness_section(r, title=name)
                                                       for name, r in results.items())
    path = Path(path)
    atomic_write_bytes(path, _page(title, body).encode())
    return path
