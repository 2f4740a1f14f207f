"""The HTML report of a real (tiny) ``torchslim run`` opened in headless
Chromium: the rendered DOM shows the title, the summary table with the
numbers of report.json, and every plot decoded by the browser; the screenshot
is the right size, not blank, and shows each plot, pixel for pixel, where the
DOM says it is.

Needs Debian's ``chromium`` (``.ci/run`` installs it). Skipped when it is not
installed, unless ``TORCHSLIM_REQUIRE_BROWSER=1`` (set by ``.ci/run``), which
makes a missing browser a failure instead."""
import base64
import io
import json
import os

import numpy as np
import pytest
import yaml

from . import browser

WIDTH, HEIGHT = 1280, 2400
NAME = "browser-tiny"
RECIPE = {
    "name": NAME,
    "model": {"zoo": "lenet300", "kwargs": {"hidden": [48, 24]}},
    "data": {"dataset": "digits", "holdout": 200},
    "baseline": "dense",
    "measure": {"latency": True, "repeats": 5, "warmup": 1, "threads": 1},  # latency measured: its plot is drawn
    "stages": [
        {"name": "dense", "kind": "train", "epochs": 1, "lr": 0.01, "batch_size": 16},
        {"name": "prune", "kind": "prune.unstructured", "sparsity": 0.8, "permanent": True},
    ],
}
PLOTS = {"accuracy vs size", "accuracy vs latency", "per-layer sparsity and bits", "weight histograms"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One real run through the CLI, then one screenshot and one DOM dump."""
    if browser.find_chromium() is None:
        why = "chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("TORCHSLIM_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TORCHSLIM_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    from torchslim.cli import main

    tmp = tmp_path_factory.mktemp("browser")
    rp = tmp / "tiny.yaml"
    rp.write_text(yaml.safe_dump(RECIPE))
    out = tmp / "run"
    assert main(["run", str(rp), "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    png = browser.screenshot(out / "report.html", tmp / "report.png", width=WIDTH, height=HEIGHT)
    dom = browser.dump_dom(out / "report.html", width=WIDTH, height=HEIGHT)
    return {"out": out, "report": report, "png": png, "page": browser.parse_dom(dom),
            "html": (out / "report.html").read_text()}


def _fmt(v):
    from torchslim.cli.common import fmt  # the formatter the HTML tables use

    return fmt(v)


def test_dom_title_and_summary_numbers_match_report_json(rendered):
    page, rep, out = rendered["page"], rendered["report"], rendered["out"]
    assert page.title == f"torchslim: {NAME}"
    assert page.h1 == [f"torchslim report: {NAME}"]
    assert {"trade-offs", "layers"} <= set(page.h2)
    assert int(page.root["data-scroll-width"]) <= WIDTH  # nothing cut off at the right of a 1280 px window

    summary = page.table("baseline vs final")
    assert summary.header == ["", "baseline", "final"]
    b, f = rep["baseline"], rep["final"]
    expected = [
        ["test accuracy", b["accuracy"], f["accuracy"]],
        ["test error %", 100 * (1 - b["accuracy"]), 100 * (1 - f["accuracy"])],
        ["params", b["params"], f["params"]],
        ["non-zero params", b["nonzero_params"], f["nonzero_params"]],
        ["MACs", b["macs"], f["macs"]],
        ["artifact bytes", b["size_bytes"], f["size_bytes"]],
        ["latency ms (median, 1 thr)", b["latency_ms"], f["latency_ms"]],
        ["compression ratio (fp32 params / artifact)", 1.0, rep["compression_ratio"]],
        ["speedup (baseline / final latency)", 1.0, rep["speedup"]],
    ]
    assert summary.rows == [[label, _fmt(bv), _fmt(fv)] for label, bv, fv in expected]
    # real numbers, not placeholders: every cell a number, tied to the files on disk
    rows = {r[0]: r[1:] for r in summary.rows}
    num = lambda s: float(s.replace(",", ""))  # noqa: E731
    assert all(num(c) > 0 for r in summary.rows for c in r[1:])
    assert 0.1 < num(rows["test accuracy"][0]) <= 1.0
    assert num(rows["artifact bytes"][1]) == (out / rep["artifact"]).stat().st_size
    assert num(rows["artifact bytes"][0]) == (out / "baseline.safetensors").stat().st_size
    assert num(rows["non-zero params"][1]) < 0.5 * num(rows["non-zero params"][0])  # pruned to 80%
    assert rep["compression_ratio"] > 1.5

    stages = page.table("stages")
    assert [r[1] for r in stages.rows] == ["baseline", "dense", "prune"]
    assert stages.rows[2][2] == "prune.unstructured" and stages.rows[2][6] == _fmt(rep["stages"][1]["metrics"]["nonzero_params"])
    assert page.table("per-layer").header[0] == "layer"


def _decode(src: str):
    from PIL import Image

    assert src.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")


def test_every_plot_is_decoded_by_the_browser(rendered):
    page = rendered["page"]
    assert page.root.get("data-probe") == "done"
    assert len(page.imgs) == rendered["html"].count("<img ")  # none lost on the way
    assert {i["alt"] for i in page.imgs} == PLOTS
    for img in page.imgs:
        alt = img["alt"]
        assert "data-decode-error" not in img, (alt, img.get("data-decode-error"))
        assert img["data-complete"] == "true", alt
        w, h = int(img["data-natural-width"]), int(img["data-natural-height"])
        assert w > 100 and h > 100, (alt, w, h)
        pil = _decode(img["src"])
        assert (w, h) == pil.size, alt
        # the browser's decoded pixels are the PNG's: same sum of R+G+B, and a plot (not a blank image)
        ref = np.asarray(pil, dtype=np.int64)
        assert abs(int(img["data-pixel-sum"]) / ref.size - ref.mean()) < 0.5, alt
        assert int(img["data-nonwhite"]) > 0.01 * w * h, alt


def _diff_near(px, ref, x0, y0):
    """Mean absolute difference of ``ref`` and the screenshot at (x0, y0), or a
    pixel either way if that is closer (sub-pixel layout)."""
    best = float("inf")
    for dy, dx in [(0, 0)] + [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]:
        y, x = y0 + dy, x0 + dx
        if 0 <= y and y + ref.shape[0] <= px.shape[0] and 0 <= x and x + ref.shape[1] <= px.shape[1]:
            best = min(best, float(np.abs(px[y:y + ref.shape[0], x:x + ref.shape[1]] - ref).mean()))
            if best < 1:
                break
    return best


def _rgb24(px):
    """Each RGB pixel as one integer (unique colours without a slow row-wise unique)."""
    return (px[..., 0] << 16 | px[..., 1] << 8 | px[..., 2]).ravel()


def test_screenshot_size_not_blank_and_shows_the_plots(rendered):
    from PIL import Image

    shot = Image.open(rendered["png"])
    assert shot.size == (WIDTH, HEIGHT)
    px = np.asarray(shot.convert("RGB"), dtype=np.int64)
    assert px.std() > 20  # a blank (white or black) page is ~0
    assert len(np.unique(_rgb24(px))) > 100  # text antialiasing plus the plots' colours
    shown = 0
    for img in rendered["page"].imgs:
        x, y, w, h = (float(v) for v in img["data-box"].split(","))
        if y + h > HEIGHT:
            continue  # below the window
        ref = np.asarray(_decode(img["src"]), dtype=np.int64)
        assert (int(w), int(h)) == (ref.shape[1], ref.shape[0]), img["alt"]  # drawn at natural size
        x0, y0 = round(x), round(y)
        diff = _diff_near(px, ref, x0, y0)
        assert diff < 3, (img["alt"], diff)  # the plot is on screen where the DOM says, as decoded (0 here)
        crop = px[y0:y0 + ref.shape[0], x0:x0 + ref.shape[1]]
        colours, counts = np.unique(_rgb24(crop), return_counts=True)
        assert (counts > 50).sum() >= 4, img["alt"]  # white, black, grey, and the plot's colours
        chroma = np.ptp(crop, axis=-1)  # 0 for white/grey/black text and axes; high for the data's blue/orange
        assert (chroma > 60).sum() > 200, img["alt"]
        shown += 1
    assert shown >= 3  # the trade-off plots and the layers plot fit in 2400 px
