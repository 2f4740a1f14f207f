"""report.html: one self-contained file (inline CSS, tables, PNG plots as
base64 data URIs; no scripts, no external links), readable offline."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

__all__ = ["render_html", "write_html", "render_compare_html"]

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.6em 0 1.4em}th,td{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f1f1f1}td.n{text-align:right;font-variant-numeric:tabular-nums}caption{text-align:left;font-weight:600;
margin-bottom:4px}img{max-width:100%;border:1px solid #eee;margin:0.5em 0}pre{background:#f7f7f7;padding:8px;
font-size:12px;overflow-x:auto}.note{color:#666;font-size:13px}.wide{overflow-x:auto}"""


def _cell(v) -> str:
    from .format import fmt

    cls = ' class="n"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
    return f"<td{cls}>{html.escape(fmt(v))}</td>"


def table_html(title: str, cols: list, rows: list) -> str:
    """A captioned HTML table (numbers formatted as everywhere)."""
    return _table(title, cols, rows)


def _table(title: str, cols: list, rows: list) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(_cell(v) for v in r) + "</tr>" for r in rows)
    # wide tables scroll inside their box instead of widening the page
    return f'<div class="wide"><table><caption>{html.escape(title)}</caption><tr>{head}</tr>{body}</table></div>'


def img_html(png: bytes | None, alt: str) -> str:
    """An embedded PNG (data URI) with its alt text."""
    return _img(png, alt)


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def page_html(title: str, body: str) -> str:
    """A self-contained page (the report's CSS)."""
    return _page(title, body)


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>")


def render_html(report: dict) -> str:
    from . import plots
    from .tables import extra_tables, layers_table, stages_table, summary_table

    name = report.get("recipe", "run")
    parts = [f"<h1>torchslim report: {html.escape(name)}</h1>",
             f"<p class=\"note\">data set {html.escape(str(report.get('dataset')))}; "
             f"created {html.escape(str(report.get('created')))}; torch {html.escape(str(report.get('environment', {}).get('torch')))}; "
             f"latency with {html.escape(str(report.get('measure', {}).get('threads')))} thread(s), batch "
             f"{html.escape(str(report.get('measure', {}).get('latency_batch')))}, median of "
             f"{html.escape(str(report.get('measure', {}).get('repeats')))} runs on a possibly shared CPU. "
             "Sizes are bytes of artifact files on disk; accuracy is on the test split.</p>"]
    if (report.get("data") or {}).get("test_limit"):
        parts.append(f"<p class=\"note\">accuracy measured on the first {report['data']['test_limit']} test examples only.</p>")
    parts.append(_table(*summary_table(report)))
    parts.append(_table(*stages_table(report)))
    runs = {name: report}
    parts.append("<h2>trade-offs</h2>")
    parts.append(_img(plots.plot_tradeoff(runs, "size_bytes", xlabel="artifact bytes (log)",
                                          title="accuracy vs size"), "accuracy vs size"))
    parts.append(_img(plots.plot_tradeoff(runs, "latency_ms", xlabel="latency ms (log)",
                                          title="accuracy vs latency"), "accuracy vs latency"))
    parts.append("<h2>layers</h2>")
    parts.append(_img(plots.plot_layers(report), "per-layer sparsity and bits"))
    parts.append(_table(*layers_table(report)))
    parts.append(_img(plots.plot_histograms(report), "weight histograms"))
    sens = plots.plot_sensitivity(report)
    if sens:
        parts.append("<h2>sensitivity</h2>" + _img(sens, "sensitivity curves"))
    if report.get("robustness"):  # recipe option measure.robustness
        from .robustness import render_robustness_section

        parts.append(render_robustness_section(report["robustness"], title="robustness: final vs baseline"))
    extras = extra_tables(report)
    if extras:
        parts.append("<h2>stage details</h2>" + "".join(_table(*t) for t in extras))
    parts.append("<h2>stage settings</h2>")
    for s in report.get("stages", []):
        parts.append(f"<details><summary>{s['index']}: {html.escape(s['name'])} ({html.escape(s['kind'])})</summary>"
                     f"<pre>{html.escape(json.dumps(s.get('config'), indent=2))}</pre></details>")
    return _page(f"torchslim: {name}", "".join(parts))


def write_html(report: dict, path: str | Path) -> Path:
    from ..artifact import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, render_html(report).encode())
    return path


def render_compare_html(reports: dict[str, dict]) -> str:
    from . import plots
    from .tables import compare_table

    parts = ["<h1>torchslim: runs compared</h1>", _table(*compare_table(reports)),
             _img(plots.plot_tradeoff(reports, "size_bytes", xlabel="artifact bytes (log)", title="accuracy vs size"),
                  "accuracy vs size"),
             _img(plots.plot_tradeoff(reports, "latency_ms", xlabel="latency ms (log)", title="accuracy vs latency"),
                  "accuracy vs latency")]
    return _page("torchslim: compare", "".join(parts))
