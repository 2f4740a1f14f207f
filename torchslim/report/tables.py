"""The report's tables as plain rows, shared by the terminal (rich) and the
HTML renderer, so both show the same numbers."""
from __future__ import annotations

from typing import Any

__all__ = ["summary_table", "stages_table", "layers_table", "compare_table", "extra_tables"]

Table = tuple[str, list[str], list[list[Any]]]


def _err(m: dict) -> float | None:
    return None if m.get("accuracy") is None else 100 * (1 - m["accuracy"])


def summary_table(report: dict) -> Table:
    b, f = report["baseline"], report["final"]
    rows = [
        ["test accuracy", b.get("accuracy"), f.get("accuracy")],
        ["test error %", _err(b), _err(f)],
        ["params", b.get("params"), f.get("params")],
        ["non-zero params", b.get("nonzero_params"), f.get("nonzero_params")],
        ["MACs", b.get("macs"), f.get("macs")],
        ["artifact bytes", b.get("size_bytes"), f.get("size_bytes")],
        [f"latency ms (median, {report.get('measure', {}).get('threads', '?')} thr)", b.get("latency_ms"),
         f.get("latency_ms")],
    ]
    if f.get("fidelity"):  # a sentence encoder: fidelity to the baseline instead of accuracy
        fb = b.get("fidelity") or {}
        rows[0:2] = [["mean cosine to baseline", fb.get("mean_cosine"), f["fidelity"]["mean_cosine"]],
                     ["min cosine to baseline", fb.get("min_cosine"), f["fidelity"]["min_cosine"]],
                     ["nearest-neighbour agreement", fb.get("nn_agreement"), f["fidelity"]["nn_agreement"]]]
    rows.append(["compression ratio (fp32 params / artifact)", 1.0, report.get("compression_ratio")])
    rows.append(["speedup (baseline / final latency)", 1.0, report.get("speedup")])
    return (f"{report.get('recipe', 'run')}: baseline vs final ({report.get('artifact')})",
            ["", "baseline", "final"], rows)


def stages_table(report: dict) -> Table:
    fp32 = report.get("baseline_fp32_bytes")
    rows = [["-", "baseline", "", _hold(report["baseline"]), report["baseline"].get("accuracy"), _err(report["baseline"]),
             report["baseline"].get("nonzero_params"), report["baseline"].get("size_bytes"),
             fp32 / report["baseline"]["size_bytes"] if fp32 and report["baseline"].get("size_bytes") else None,
             report["baseline"].get("latency_ms"), None]]
    for s in report.get("stages", []):
        m = s.get("metrics") or {}
        rows.append([s["index"], s["name"], s["kind"], _hold(m), m.get("accuracy"), _err(m), m.get("nonzero_params"),
                     m.get("size_bytes"), fp32 / m["size_bytes"] if fp32 and m.get("size_bytes") else None,
                     m.get("latency_ms"), s.get("seconds")])
    return ("stages (each measured from its artifact on disk)",
            ["#", "stage", "kind", "holdout err % (choose by this)", "accuracy", "error %", "non-zero", "bytes",
             "ratio", "latency ms", "seconds"], rows)


def _hold(m: dict):
    """Error % on the selection split of train (None when the recipe has
    none); for a sentence encoder, 100 x (1 - mean cosine to the baseline)."""
    acc = m.get("holdout_accuracy")
    if acc is None and m.get("holdout_fidelity"):
        acc = m["holdout_fidelity"]["mean_cosine"]
    return None if acc is None else 100 * (1 - acc)


def layers_table(report: dict) -> Table:
    base = {l["name"]: l for l in report["baseline"].get("layers") or []}
    rows = []
    for l in report["final"].get("layers") or []:
        b = base.get(l["name"], {})
        rows.append([l["name"], l["type"], "x".join(map(str, l["shape"])), l["params"], l["nonzero"],
                     100 * l["sparsity"], l["distinct"], b.get("bits"), l["bits"]])
    return ("per-layer (final artifact)",
            ["layer", "type", "shape", "params", "non-zero", "sparsity %", "distinct values", "bits before",
             "bits after"], rows)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


def _row_tables(title: str, v) -> list[Table]:
    """A list of mappings, or a mapping of mappings (one row per key), as a
    table (nested mappings flattened to dotted columns); else look one level
    deeper (e.g. the codec's stats hold their per-tensor rows under "tensors")."""
    if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
        v = [{"name": k, **x} for k, x in v.items()]
    if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
        rows = [_flat(x) for x in v]
        cols: list[str] = []
        for r in rows:
            cols += [k for k in r if k not in cols]
        cols = [c for c in cols if any(r.get(c) is not None for r in rows)]
        return [(title, cols, [[r.get(c) for c in cols] for r in rows])] if cols else []
    if isinstance(v, dict):
        return [t for k, x in v.items() if isinstance(x, (dict, list)) for t in _row_tables(f"{title}.{k}", x)]
    return []


def extra_tables(report: dict) -> list[Table]:
    """Tables a stage recorded in its extras (e.g. the codec's per-tensor bits
    per weight and per index, fixed vs Huffman vs the entropy bound)."""
    out = []
    for s in report.get("stages", []):
        for key, v in (s.get("extras") or {}).items():
            if key in ("fit_history", "sensitivity"):
                continue
            out += _row_tables(f"stage {s['index']} ({s['name']}): {key}", v)
    return out


def compare_table(reports: dict[str, dict]) -> Table:
    names = list(reports)
    keys = [("recipe", lambda r: r.get("recipe")),
            ("baseline accuracy", lambda r: r["baseline"].get("accuracy")),
            ("final accuracy", lambda r: r["final"].get("accuracy")),
            ("final error %", lambda r: _err(r["final"])),
            ("params", lambda r: r["final"].get("params")),
            ("non-zero params", lambda r: r["final"].get("nonzero_params")),
            ("MACs", lambda r: r["final"].get("macs")),
            ("artifact bytes", lambda r: r["final"].get("size_bytes")),
            ("compression ratio", lambda r: r.get("compression_ratio")),
            ("final latency ms", lambda r: r["final"].get("latency_ms")),
            ("speedup", lambda r: r.get("speedup")),
            ("stages", lambda r: " > ".join(s["name"] for s in r.get("stages", [])))]
    rows = [[k] + [f(reports[n]) for n in names] for k, f in keys]
    return ("runs side by side", [""] + names, rows)
