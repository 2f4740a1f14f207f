"""Robustness of compressed models against their originals
(``torchslim.analysis.robustness.compare``), for

* the two "plus" Deep Compression LeNets: each recipe's final artifact
  (``model.tslim``, loaded alone) against the dense baseline it was
  compressed from (``baseline.safetensors`` of the same run folder), on the
  10,000 MNIST test images: accuracy under 7 corruptions x 5 severities,
  top-1 agreement, ECE, per-class accuracy drop; per-layer sensitivity on the
  recipe's 5,000-image holdout (restore each layer alone where its shapes
  match, and the pruning scan of the dense model);
* the int8 MiniLM of ``bench_minilm_int8`` (torchslim dynamic int8 with
  SmoothQuant, exported the same way, on ONNX Runtime) against PyTorch fp32,
  on the corpus' eval sentences: token dropout / token swap at 5 rates;
  retrieval@1 (corrupted sentence -> its own clean sentence), stability
  (cosine to its clean embedding), and NN agreement + mean cosine between
  the two models.

The LeNet runs are the ones ``bench_deep_compression`` makes and caches: run
folders under ``DC_RUNS_DIR`` (default benchmarks/results/runs), one per
recipe. A missing run is made here with ``run_recipe`` (end to end,
resumable; tens of minutes per recipe on a shared 2-core machine), unless
``ROB_RUN_MISSING=0``.

    .venv/bin/python -m benchmarks.run_all robustness
    ROB_MINILM=0 .venv/bin/python -m benchmarks.bench_robustness     # LeNets only

Other settings: ``ROB_RECIPES`` (comma list), ``ROB_SEED`` (corruption
seed, default 0), ``ROB_THREADS`` (default 2), ``ROB_SENTENCES`` (default
bench_minilm_int8's eval count), ``ROB_HTML`` (default
``$DC_RUNS_DIR/robustness.html``; the page with the plots, kept out of git).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

from torchslim.prune.sensitivity import sensitivity_scan

from benchmarks.common import RESULTS, write_result

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ("deep-compression-lenet5-plus", "deep-compression-lenet300-plus")


def _runs_dir() -> Path:
    return Path(os.environ.get("DC_RUNS_DIR", RESULTS / "runs"))


def lenet(name: str, *, seed: int) -> dict:
    """compare() of a recipe run's final artifact against its dense baseline."""
    from torchslim.analysis.robustness import compare
    from torchslim.artifact import load
    from torchslim.recipe import run_recipe
    from torchslim.report.json_report import read_report
    from torchslim.zoo.data import load_dataset, split_train

    out = _runs_dir() / name
    if not (out / "report.json").is_file():
        if os.environ.get("ROB_RUN_MISSING", "1") == "0":
            raise SystemExit(f"{out}: no finished run; run `torchslim run recipes/{name}.yaml --out {out}` "
                             "or unset ROB_RUN_MISSING")
        print(f"{name}: no run in {out}; running the recipe (end to end, resumable)", flush=True)
        run_recipe(ROOT / "recipes" / f"{name}.yaml", out, progress=False)
    report = read_report(out)
    artifact = out / report["artifact"]
    original, compressed = load(out / "baseline.safetensors"), load(artifact)
    data = report["data"]
    test = load_dataset(data["dataset"], "test")
    _, holdout = split_train(load_dataset(data["dataset"], "train"), data["holdout"], seed=data.get("seed", 0))
    holdout.split = f"train holdout ({len(holdout):,})"
    t0 = time.perf_counter()
    result = compare(original, compressed, test, seed=seed, sensitivity="both", sensitivity_data=holdout,
                     scan_fn=sensitivity_scan)
    result["seconds"] = time.perf_counter() - t0
    result["models"] = {"original": str(out / "baseline.safetensors"), "compressed": str(artifact),
                        "compressed_bytes": artifact.stat().st_size, "compression_ratio": report["compression_ratio"],
                        "original_params": report["baseline"]["params"],
                        "compressed_nonzero_params": report["final"]["nonzero_params"],
                        "report_created": report.get("created")}
    return result


def minilm(*, seed: int, threads: int) -> dict:
    """compare() of bench_minilm_int8's torchslim int8 export (ONNX Runtime) against PyTorch fp32."""
    from benchmarks.bench_minilm_int8 import N_CALIB, N_EVAL, SMOOTH
    from torchslim.analysis.robustness import compare
    from torchslim.export import OrtModel, to_onnx
    from torchslim.export.inputs import text_calibration, token_batch
    from torchslim.zoo import build_model
    from torchslim.zoo.text import sentences

    n = int(os.environ.get("ROB_SENTENCES", N_EVAL))
    model = build_model("minilm").eval()
    path = to_onnx(model, Path(tempfile.mkdtemp(prefix="bench_robustness_")) / "minilm_torchslim_int8.onnx",
                   token_batch(sentences(4, split="eval")), int8="dynamic", smooth=SMOOTH,
                   calib=text_calibration(N_CALIB, batch_size=32))
    int8 = OrtModel(path, threads=threads)
    ids, mask = token_batch(sentences(n, split="eval"))
    t0 = time.perf_counter()
    result = compare(model, int8, (ids, mask), seed=seed, batch_size=64)
    result["seconds"] = time.perf_counter() - t0
    result["models"] = {"original": "minilm (PyTorch fp32)", "compressed": "torchslim int8 dynamic, SmoothQuant "
                        f"alpha {SMOOTH} (ONNX Runtime, {threads} threads)", "compressed_bytes": path.stat().st_size}
    return result


def _cells(values, pct: bool = True) -> str:
    return "".join(f"{'-' if v is None else (f'{100 * v:.2f}' if pct else f'{v:.4f}'):>8s}" for v in values)


def print_classifier(name: str, r: dict) -> None:
    m = r["models"]
    print(f"\n== {name}: dense baseline vs {Path(m['compressed']).name} ({m['compressed_bytes']:,} B, "
          f"{m['compression_ratio']:.1f}x); {r['n']:,} test images, seed {r['seed']}")
    sev = ["s0 clean", *[f"s{s}" for s in r["severities"]]]
    print(f"{'corruption':15s} {'':11s}" + "".join(f"{s:>8s}" for s in sev))
    clean = r["clean"]
    for k, c in r["corruptions"].items():
        print(f"{k:15s} {'dense %':11s}" + _cells([clean["original"], *c["original"]]))
        print(f"{'':15s} {'compr. %':11s}" + _cells([clean["compressed"], *c["compressed"]]))
        print(f"{'':15s} {'agree %':11s}" + _cells([clean["agreement"], *c["agreement"]]))
    mc, cal = r["mean_corrupted"], r["calibration"]
    print(f"mean over corruptions: dense {100 * mc['original']:.2f}%, compressed {100 * mc['compressed']:.2f}%, "
          f"agreement {100 * mc['agreement']:.2f}%")
    print(f"ECE (15 bins, clean): dense {100 * cal['original']['ece']:.2f}%, compressed "
          f"{100 * cal['compressed']['ece']:.2f}%")
    print("per-class drop (points, largest first): " + ", ".join(f"{p['class']}: {100 * p['drop']:+.2f}"
                                                             for p in r["per_class"]))
    sens = r.get("sensitivity") or {}
    if "restore" in sens:
        s = sens["restore"]
        print(f"restore one layer (on {s['data']}; compressed {100 * s['compressed']:.2f}%, dense "
              f"{100 * s['original']:.2f}%): " + "; ".join(
                  f"{row['layer']} {'+' if row['gain'] >= 0 else ''}{100 * row['gain']:.2f}" if row["gain"] is not None
                  else f"{row['layer']} n/a ({row['status']})" for row in s["layers"]))
    if "scan" in sens:
        s = sens["scan"]
        print(f"pruning scan of the dense model (on {s['data']}, accuracy % at sparsity "
              f"{', '.join(f'{x:g}' for x in s['sparsities'])}): " + "; ".join(
                  f"{row['layer']} " + "/".join(f"{100 * v:.1f}" for v in row["values"]) for row in s["layers"]))
    print(f"({r['seconds']:.0f} s)")


def print_text(r: dict) -> None:
    print(f"\n== MiniLM: {r['models']['compressed']} vs PyTorch fp32; {r['n']:,} eval sentences, seed {r['seed']}")
    sev = ["s0 clean", *[f"s{s}" for s in r["severities"]]]
    print(f"{'corruption':15s} {'':17s}" + "".join(f"{s:>8s}" for s in sev))
    clean = r["clean"]
    for k, c in r["corruptions"].items():
        rows = [("fp32 retrieval %", [clean["original"]["retrieval"], *c["original"]["retrieval"]], True),
                ("int8 retrieval %", [clean["compressed"]["retrieval"], *c["compressed"]["retrieval"]], True),
                ("fp32 stability", [clean["original"]["stability"], *c["original"]["stability"]], False),
                ("int8 stability", [clean["compressed"]["stability"], *c["compressed"]["stability"]], False),
                ("NN agreement %", [clean["agreement"]["nn_agreement"], *c["agreement"]["nn_agreement"]], True),
                ("mean cosine", [clean["agreement"]["mean_cosine"], *c["agreement"]["mean_cosine"]], False)]
        for i, (label, vals, pct) in enumerate(rows):
            print(f"{k if i == 0 else '':15s} {label:17s}" + _cells(vals, pct))
    units = ", ".join(f"{k}: {v['unit']} x severity" for k, v in r["corruption_units"].items())
    print(f"rates: {units} ({r['seconds']:.0f} s)")


def main() -> dict:
    from torchslim.report.robustness import write_robustness_html

    threads = int(os.environ.get("ROB_THREADS", "2"))
    seed = int(os.environ.get("ROB_SEED", "0"))
    torch.set_num_threads(threads)
    names = [n.strip() for n in os.environ.get("ROB_RECIPES", ",".join(RECIPES)).split(",") if n.strip()]
    results: dict[str, dict] = {}
    for name in names:
        results[name] = lenet(name, seed=seed)
        print_classifier(name, results[name])
    if os.environ.get("ROB_MINILM", "1") != "0":
        results["minilm-int8"] = minilm(seed=seed, threads=threads)
        print_text(results["minilm-int8"])
    html = Path(os.environ.get("ROB_HTML", _runs_dir() / "robustness.html"))
    html.parent.mkdir(parents=True, exist_ok=True)
    write_robustness_html(results, html)
    out = {"results": results, "setup": {"threads": threads, "seed": seed, "machine": "shared 2-core VM",
                                         "html": str(html)}}
    path = write_result("robustness", out)
    print(f"\nwrote {path} and {html}")
    return out


if __name__ == "__main__":
    main()
