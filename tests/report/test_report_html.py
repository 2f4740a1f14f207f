import re

from torchslim.report import build_report, read_report, render_compare_html, render_html, write_report
from torchslim.report.tables import compare_table, extra_tables, stages_table, summary_table


class _R:  # the parts of a Recipe a report needs
    def __init__(self):
        from torchslim.recipe import load_recipe

        r = load_recipe({"name": "syn", "model": "lenet300", "data": {"dataset": "digits"},
                         "stages": [{"kind": "train"}]})
        self.name, self.model, self.data, self.measure = r.name, r.model, r.data, r.measure


def _metrics(acc, nz, size, lat):
    return {"accuracy": acc, "params": 1000, "nonzero_params": nz, "macs": 1000, "size_bytes": size,
            "latency_ms": lat}


def _report():
    layers = {"layers": [{"name": "fc", "type": "Linear", "shape": [10, 100], "params": 1000, "nonzero": 100,
                          "sparsity": 0.9, "distinct": 16, "bits": 4}],
              "histogram": {"layer": "fc", "params": 1000, "nonzero": 100, "edges": [0.0, 0.5, 1.0],
                            "counts": [40, 60], "values": [0.1, 0.6], "value_counts": [40, 60]}}
    stages = [{"index": 0, "name": "prune", "kind": "prune.unstructured", "config": {"sparsity": 0.9}, "seconds": 1.0,
               "metrics": _metrics(0.95, 100, 900, 0.2), **layers,
               "extras": {"codec_stats": {"fc": {"bits_before": 4.0, "bits_after": 2.7, "entropy": 2.6}},
                          "sensitivity": {"fc": [[0.5, 0.97], [0.9, 0.95]]}}}]
    base = {"layers": [dict(layers["layers"][0], nonzero=1000, sparsity=0.0, distinct=1000, bits=32)],
            "histogram": {"layer": "fc", "params": 1000, "nonzero": 1000, "edges": [0.0, 1.0], "counts": [1000]}}
    return build_report(recipe=_R(), baseline=_metrics(0.97, 1000, 4200, 0.25), baseline_layers=base,
                        final=_metrics(0.95, 100, 500, 0.2), final_layers=layers, artifact="model.tslim",
                        stages=stages, paired_latency={"a_median_ms": 0.25, "b_median_ms": 0.2})


def test_contract_numbers_and_tables(tmp_path):
    rep = _report()
    assert rep["compression_ratio"] == 4000 / 500 and abs(rep["speedup"] - 1.25) < 1e-12
    write_report(rep, tmp_path / "report.json")
    assert read_report(tmp_path) == read_report(tmp_path / "report.json")
    title, cols, rows = summary_table(rep)
    assert rows[-2][-1] == 8.0 and cols == ["", "baseline", "final"]
    _, cols, rows = stages_table(rep)
    assert rows[0][1] == "baseline" and rows[1][1] == "prune" and rows[1][8] == 4000 / 900
    (t, cols, rows), = extra_tables(rep)
    assert "codec_stats" in t and cols == ["name", "bits_before", "bits_after", "entropy"] and rows[0][0] == "fc"


def test_html_is_self_contained_with_plots():
    page = render_html(_report())
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) >= 5  # size, latency, layers, histograms, sensitivity
    import base64

    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    assert not re.search(r"<script|<link|https?://|src=\"(?!data:)", page)
    assert "codec_stats" in page and "per-layer" in page


def test_compare_renders_runs_side_by_side():
    a, b = _report(), _report()
    b["final"]["size_bytes"], b["compression_ratio"] = 250, 16.0
    _, cols, rows = compare_table({"a": a, "b": b})
    assert cols == ["", "a", "b"]
    assert dict((r[0], r[1:]) for r in rows)["compression ratio"] == [8.0, 16.0]
    page = render_compare_html({"a": a, "b": b})
    assert page.count("data:image/png;base64,") >= 2 and not re.search(r"https?://|<script", page)
