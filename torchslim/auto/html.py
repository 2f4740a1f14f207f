"""``DIR/report.html`` of a search: one self-contained page (the run
report's CSS, the front plot as a PNG data URI, no scripts) with the baseline, the front (each
point linked to its own trial report, relative links inside ``DIR``), every
trial and how to open the study in optuna-dashboard."""
from __future__ import annotations

import html

from ..report.format import fmt

__all__ = ["render_front_html", "front_section"]


def _fmt(v) -> str:
    """The report's number format, plus yes/no for flags and key: value lists."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return fmt(v)


def _table(title: str, cols: list[str], rows: list[list], raw: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = ""
    for r in rows:
        cells = []
        for i, v in enumerate(r):
            cls = ' class="n"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{v if i in raw else html.escape(_fmt(v))}</td>")
        body += "<tr>" + "".join(cells) + "</tr>"
    return f"<table><caption>{html.escape(title)}</caption><tr>{head}</tr>{body}</table>"


def _speed(m: dict | None) -> str:
    s = (m or {}).get("speedup")
    return ", ".join(f"b{b}: {v:.2f}x" for b, v in s.items()) if s else "-"


def front_section(front: dict, *, link_prefix: str = "") -> str:
    """The front plot and table as an HTML fragment (for embedding in another
    report; trial links are prefixed with ``link_prefix``)."""
    from .plot import plot_front

    objectives = front.get("objectives") or []
    parts = []
    from ..report.html import img_html

    parts.append(img_html(plot_front(front), "Pareto front"))
    rows = []
    for p in front.get("front", []):
        m = p.get("metrics") or {}
        link = f'<a href="{html.escape(link_prefix + p["html"])}">{p["trial"]}</a>'
        rows.append([link, p.get("strategy"), *[p["values"].get(o) for o in objectives],
                     None if m.get("holdout_accuracy") is None else 100 * m["holdout_accuracy"],
                     None if m.get("accuracy") is None else 100 * m["accuracy"], m.get("size_bytes"),
                     m.get("compression_ratio"), _speed(m), p.get("artifact")])
    parts.append(_table(f"Pareto front ({len(rows)} points within the budget)",
                        ["trial", "strategy", *objectives, "holdout acc %", "test acc %", "bytes", "ratio",
                         "speedup", "artifact"], rows, raw={0}))
    return "".join(parts)


def render_front_html(front: dict) -> str:
    b = front.get("baseline") or {}
    title = f"torchslim auto: {front.get('study', 'search')}"
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p class=\"note\">objectives {html.escape(', '.join(front.get('objectives') or []))} "
             f"({html.escape(', '.join(front.get('directions') or []))}); budget "
             f"<code>{html.escape(front.get('budget') or 'none')}</code>; strategy {html.escape(str(front.get('strategy')))}; "
             f"{front.get('n_trials')} trials asked, {html.escape(_fmt(front.get('counts')))}; storage "
             f"<code>{html.escape(str(front.get('storage')))}</code>. Accuracy constraints and the accuracy objective "
             "use the holdout split made from the training data; test accuracy is only reported. Bytes are sizes "
             "of artifact files on disk. Open the study with "
             f"<code>{html.escape(str(front.get('dashboard')))}</code>.</p>"]
    lat = front.get("latency")
    if lat:
        parts.append(f"<p class=\"note\">latency: {html.escape(str(lat.get('runtime')))}, {lat.get('threads')} "
                     f"thread(s), batch sizes {html.escape(str(lat.get('batch_sizes')))}, medians of "
                     f"{lat.get('repeats')} alternating pairs with the baseline.</p>")
    parts.append(_table("baseline", ["holdout acc %", "test acc %", "bytes", "params", "MACs", "latency ms"],
                        [[100 * b.get("holdout_accuracy", 0), 100 * b.get("accuracy", 0), b.get("size_bytes"),
                          b.get("params"), b.get("macs"), b.get("latency_ms")]]))
    parts.append("<h2>front</h2>" + front_section(front))
    rows = []
    objectives = front.get("objectives") or []
    for r in front.get("trials", []):
        vals = r.get("values") or {}
        m = r.get("metrics") or {}
        link = (f'<a href="{html.escape(r["dir"] + "/report.html")}">{r["trial"]}</a>'
                if r.get("dir") and r["state"] == "COMPLETE" else str(r["trial"]))
        note = r.get("pruned_by") or r.get("error") or ""
        if r.get("retry_of") is not None:
            note = f"rerun of trial {r['retry_of']} (its process died) {note}".strip()
        rows.append([link, r["state"].lower(), r.get("strategy"), *[vals.get(o) for o in objectives],
                     r.get("feasible"), _speed(m), r.get("seconds"), note])
    parts.append("<h2>trials</h2>" + _table("every trial", ["trial", "state", "strategy", *objectives,
                                                             "within budget", "speedup", "seconds", "note"],
                                             rows, raw={0}))
    from ..report.html import page_html

    return page_html(title, "".join(parts))
