"""Once-for-all NAS under a measured ONNX Runtime latency budget, side by
side with structured pruning at equal measured latency (MNIST).

For each model (``resnet8`` by default; ``mobilenetv2`` with
TORCHSLIM_BENCH_ONLY=resnet8,mobilenetv2), starting from the trained dense
baseline of benchmarks.common (cached):

1. ``pruning``: PRUNE_BLOCKS identity residual blocks out
   (torchslim.prune.remove_blocks; NAS may skip the same blocks), then
   torchslim.prune.structured(target="latency", ratio=LATENCY_RATIO,
   round_to=ROUND_TO, L2 importance): the smallest common channel fraction whose
   copy runs at least 1 / (1 - LATENCY_RATIO) times faster than the dense
   model in ONNX Runtime (THREADS threads, batch 1 and 32; the slower decides;
   alternating pairs). Channel cuts alone do not reach that on resnet8: at
   batch 1 it pays per operator. Its measured speedups (the median of three
   paired measurements at batch 1 and at batch 32) are then the NAS budget,
   per batch size, so NAS must be at least as fast as the pruned model at both.
2. ``nas``: torchslim.nas.search: the elastic supernet of the dense model
   (elastic stage and block widths, elastic depth), trained SUPERNET_STEPS
   sandwich steps (largest + smallest + 2 random subnets, in-place
   distillation), then evolutionary search (and TPE with as many scored
   candidates, if NAS_TPE) under that speedup budget: candidates over budget
   by the per-layer latency table (ONNX Runtime, batch 1 and 32; predicted
   speedup over the largest subnet) are not scored, the others are scored on a HOLDOUT-example holdout of the training
   split after BatchNorm recalibration; the best ones are measured whole
   (alternating pairs against the dense model) until one meets the budget.
   The table's rank correlation with whole-subnet measurement is reported.
3. Both models: BatchNorm recalibrated on the same training batches, then
   fine-tuned with the same budget (FT_STEPS steps of batch 128, Adam, cosine,
   the training split minus the holdout). Test accuracy (test split, for this
   report only: nothing is chosen on it), holdout accuracy, MACs, params,
   paired ONNX Runtime speedups over the dense model at batch 1 and 32, and
   a direct pair NAS vs pruning.

Caveat: the dense baseline (benchmarks.common.baseline, shared by every
benchmark) was trained on the whole training split, the holdout included, so
holdout accuracies of the baseline and of the supernet's subnets (which start
from it) are optimistic; the supernet, the searches and both fine-tunes train
on the split minus the holdout, and the test split is never used to choose.

Every trained piece is cached under the runs dir (TORCHSLIM_BENCH_RUNS,
default ~/.cache/torchslim/bench/nas-runs/<model>): the supernet's fit
checkpoints, the latency table, the finished search, the pruned model and
both fine-tunes; a rerun resumes. Results: benchmarks/results/nas-<model>.json.

Environment: TORCHSLIM_BENCH_ONLY (models, comma list), TORCHSLIM_BENCH_RUNS,
TORCHSLIM_BENCH_NAS_SUPERNET_STEPS (default 300), TORCHSLIM_BENCH_NAS_FT_STEPS
(300), TORCHSLIM_BENCH_NAS_LATENCY_RATIO (0.4: 1.67x), TORCHSLIM_BENCH_NAS_TPE (1),
TORCHSLIM_BENCH_NAS_POPULATION (16), TORCHSLIM_BENCH_NAS_GENERATIONS (6),
TORCHSLIM_BENCH_NAS_PRUNE_BLOCKS (1),
TORCHSLIM_BENCH_LAT_REPEATS (30).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from benchmarks.common import Timer, baseline, write_result
from torchslim.analysis.evaluate import evaluate
from torchslim.analysis.latency import compare_latency, speedup_fn
from torchslim.artifact import load, save
from torchslim.nas import NASConfig, search
from torchslim.prune import count_cost, recalibrate_bn, remove_blocks, structured
from torchslim.train import TrainConfig, fit
from torchslim.zoo import load_dataset, split_train
from torchslim.zoo.data import cache_dir

THREADS = 2
IMAGE = (1, 28, 28)
HOLDOUT = 5000
ROUND_TO = 8
BN_BATCHES = 20
LAT_REPEATS = int(os.environ.get("TORCHSLIM_BENCH_LAT_REPEATS", 30))
SUPERNET_STEPS = int(os.environ.get("TORCHSLIM_BENCH_NAS_SUPERNET_STEPS", 300))
FT_STEPS = int(os.environ.get("TORCHSLIM_BENCH_NAS_FT_STEPS", 300))
LATENCY_RATIO = float(os.environ.get("TORCHSLIM_BENCH_NAS_LATENCY_RATIO", 0.4))
NAS_TPE = os.environ.get("TORCHSLIM_BENCH_NAS_TPE", "1") not in ("", "0", "false")
POPULATION = int(os.environ.get("TORCHSLIM_BENCH_NAS_POPULATION", 16))
GENERATIONS = int(os.environ.get("TORCHSLIM_BENCH_NAS_GENERATIONS", 6))
PRUNE_BLOCKS = int(os.environ.get("TORCHSLIM_BENCH_NAS_PRUNE_BLOCKS", 1))
TIE_POINTS = 0.1  # test-accuracy differences below this (10 of 10,000 images) are called a tie


def runs_dir(name: str) -> Path:
    root = Path(os.environ.get("TORCHSLIM_BENCH_RUNS", cache_dir() / "bench" / "nas-runs"))
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def _image_inputs(bs: int) -> tuple:
    g = torch.Generator().manual_seed(bs)
    return (torch.rand(bs, *IMAGE, generator=g),)


def _data():
    train, holdout = split_train(load_dataset("mnist", "train"), HOLDOUT, seed=0)
    return train, holdout, load_dataset("mnist", "test")


def _acc(model, data) -> float:
    return 100.0 * evaluate(model.eval(), data)["accuracy"]


def _read(p: Path):
    return json.loads(p.read_text()) if p.is_file() else None


def _write(p: Path, obj) -> None:
    from torchslim.core.io import atomic_write_bytes

    atomic_write_bytes(p, json.dumps(obj, indent=1, default=str).encode())


def _ort(model, path):
    from torchslim.export import OrtModel, to_onnx

    return OrtModel(to_onnx(model.eval(), path, _image_inputs(1)), threads=THREADS)


def paired_speedups(a, b, rounds: int = 1) -> dict:
    """{b1|b32: a_ms / b_ms}: ONNX Runtime sessions of both, timed alternately
    (compare_latency, median of per-pair ratios); with ``rounds`` > 1, the
    median of that many such measurements (each one's figures kept)."""
    import statistics

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        ra, rb = _ort(a, f"{tmp}/a.onnx"), _ort(b, f"{tmp}/b.onnx")
        for bs in (1, 32):
            rs = [compare_latency(ra, rb, _image_inputs(bs), threads=THREADS, repeats=LAT_REPEATS)
                  for _ in range(rounds)]
            r = sorted(rs, key=lambda x: x["ratio_median"])[len(rs) // 2]
            out[f"b{bs}"] = {"speedup": r["ratio_median"], "a_ms": r["a_median_ms"], "b_ms": r["b_median_ms"],
                             "ratio_p10": r["ratio_p10"], "ratio_p90": r["ratio_p90"]}
            if rounds > 1:
                out[f"b{bs}"]["rounds"] = [x["ratio_median"] for x in rs]
                out[f"b{bs}"]["spread"] = statistics.pstdev(out[f"b{bs}"]["rounds"])
    return out


def _finetune(model, train, out_dir: Path):
    """The shared fine-tune budget: BatchNorm re-estimated on the same training
    batches, then FT_STEPS steps of batch 128 (Adam 1e-3, cosine)."""
    recalibrate_bn(model, train, batches=BN_BATCHES)
    cfg = TrainConfig(epochs=1, batch_size=128, lr=1e-3, optimizer="adam", scheduler="cosine", seed=1,
                      max_steps_per_epoch=FT_STEPS, checkpoint_every_steps=100)
    with Timer() as t:
        fit(model, train, cfg, out_dir=out_dir, progress=False)
    return model.eval(), t.seconds, cfg.to_dict()


def _say(msg: str) -> None:
    print(f"[nas] {msg}", flush=True)


# ------------------------------------------------------------------ the two arms
def prune_arm(base, run: Path, ex, calib) -> tuple:
    """Structured pruning to the latency target (cached: the pruned model and
    its measured speedup): PRUNE_BLOCKS identity residual blocks out first
    (least output change on ``calib``; at batch 1 these small models pay per
    operator, and channel cuts alone do not reach the target), then channels
    until ONNX Runtime runs the copy 1 / (1 - LATENCY_RATIO) times faster than
    the dense model at batch 1 and 32."""
    path, info_path = run / "pruned.safetensors", run / "pruned.json"
    info = _read(info_path)
    if path.is_file() and info is not None:
        return load(path).eval(), info
    sets = [_image_inputs(1), _image_inputs(32)]
    vs_dense = speedup_fn(sets, runtime="onnxruntime", threads=THREADS, repeats=LAT_REPEATS, reduce="min")
    with Timer() as t, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m, removed = base, []
        if PRUNE_BLOCKS:
            m = remove_blocks(base, ex, count=PRUNE_BLOCKS, calib_data=calib)
            removed = m.torchslim_blocks["removed"]
        pruned = structured(m, ex, ratio=LATENCY_RATIO, target="latency", importance="l2", round_to=ROUND_TO,
                            latency_fn=lambda _blocks_out, cand: vs_dense(base, cand))  # speedup over the dense model
    info = {"prune_seconds": t.seconds, "target_speedup": 1.0 / (1.0 - LATENCY_RATIO), "blocks_removed": removed,
            "search_measured_reduction": pruned.torchslim_structured["achieved_reduction"],
            "groups": pruned.torchslim_structured["groups"],
            "measured": paired_speedups(base, pruned, rounds=3)}
    save(pruned, path)
    _write(info_path, info)
    return pruned.eval(), info


def nas_arm(base, run: Path, ex, train, holdout, speedup: tuple[float, float]) -> tuple:
    cfg = NASConfig(
        supernet_train=TrainConfig(epochs=1, batch_size=128, lr=5e-4, optimizer="adam", scheduler="cosine", seed=0,
                                   max_steps_per_epoch=SUPERNET_STEPS, checkpoint_every_steps=50),
        speedup=speedup, latency_runtime="onnxruntime", latency_batch_sizes=(1, 32), latency_threads=THREADS,
        latency_repeats=LAT_REPEATS, validate_proxy=8, algorithm="evolution", population=POPULATION,
        generations=GENERATIONS, parents=max(1, min(4, POPULATION // 2)), holdout=HOLDOUT, bn_batches=BN_BATCHES, seed=0)
    with Timer() as t:
        evo = search(base, train, holdout, config=cfg, example_inputs=ex, out_dir=run / "nas", progress=False, log=_say)
    runs = {"evolution": (evo, t.seconds)}
    if NAS_TPE:  # the same trained supernet and latency table, TPE with as many scored candidates
        tpe_dir = run / "nas-tpe"
        tpe_dir.mkdir(exist_ok=True)
        if not (tpe_dir / "latency_table.json").exists() and (run / "nas" / "latency_table.json").exists():
            shutil.copy(run / "nas" / "latency_table.json", tpe_dir / "latency_table.json")
        with Timer() as t:
            tpe = search(base, train, holdout, config=cfg.replace(algorithm="tpe", trials=max(1, evo.search.scored)),
                         supernet=evo.supernet, example_inputs=ex, out_dir=tpe_dir, progress=False, log=_say)
        runs["tpe"] = (tpe, t.seconds)
    return runs, cfg


def _summary(res, seconds: float) -> dict:
    s = res.summary()
    return {"config": res.config, "holdout_score": res.search.confirmed.score, "scored": res.search.scored,
            "rejected_by_proxy": res.search.rejected, "confirmations": s["search"]["confirmations"],
            "latency": res.latency, "seconds": seconds, "phase_seconds": res.seconds}


def _verdict(nas: dict, pruned: dict, direct: dict) -> dict:
    diff = nas["accuracy"] - pruned["accuracy"]
    nas_not_slower = all(direct[b]["speedup"] >= 0.97 for b in ("b1", "b32"))  # pruned_ms / nas_ms
    if abs(diff) < TIE_POINTS:
        text = (f"NAS and structured pruning tie on test accuracy ({nas['accuracy']:.2f}% vs {pruned['accuracy']:.2f}%, "
                f"difference under {TIE_POINTS} points) at equal measured latency")
        beats = False
    elif diff > 0:
        text = (f"NAS beats structured pruning: {nas['accuracy']:.2f}% vs {pruned['accuracy']:.2f}% test accuracy "
                f"at equal measured latency")
        beats = True
    else:
        text = (f"NAS does NOT beat structured pruning: {nas['accuracy']:.2f}% vs {pruned['accuracy']:.2f}% test "
                f"accuracy at equal measured latency")
        beats = False
    if not nas_not_slower:
        text += (" (but the NAS subnet measured slower than the pruned model in the direct pair: "
                 f"b1 {direct['b1']['speedup']:.2f}, b32 {direct['b32']['speedup']:.2f} pruned/NAS time)")
        beats = False
    return {"nas_beats_pruning": beats, "accuracy_difference_points": diff, "nas_not_slower": nas_not_slower,
            "text": text}


def bench_model(name: str) -> dict:
    torch.set_num_threads(1)
    base, info = baseline(name, progress=False)
    base.eval()
    train, holdout, test = _data()
    run = runs_dir(name)
    ex = _image_inputs(1)
    base_macs, base_params = count_cost(base, ex, "macs"), count_cost(base, ex, "params")
    res: dict = {"model": name, "baseline_train": info.get("train"),
                 "baseline": {"accuracy": _acc(base, test), "holdout_accuracy": _acc(base, holdout),
                              "macs": base_macs, "params": base_params},
                 "settings": {"threads": THREADS, "runtime": "onnxruntime", "latency_batch_sizes": [1, 32],
                              "latency_repeats": LAT_REPEATS, "holdout": HOLDOUT, "round_to_pruning": ROUND_TO, "prune_blocks": PRUNE_BLOCKS,
                              "latency_ratio_pruning": LATENCY_RATIO, "supernet_steps": SUPERNET_STEPS,
                              "finetune_steps": FT_STEPS, "population": POPULATION, "generations": GENERATIONS,
                              "tpe": NAS_TPE, "runs_dir": str(run),
                              "baseline_note": "the dense baseline was trained on the whole training split, holdout "
                                               "included (benchmarks.common.baseline); the supernet, searches and "
                                               "fine-tunes train on the split minus the holdout"}}
    _say(f"{name}: structured pruning to a {1 / (1 - LATENCY_RATIO):.2f}x measured ONNX Runtime speedup ...")
    pruned, pinfo = prune_arm(base, run, ex, holdout.take(512))
    budget = tuple(pinfo["measured"][b]["speedup"] for b in ("b1", "b32"))
    _say(f"{name}: pruned model measured {budget[0]:.3f}x / {budget[1]:.3f}x (batch 1 / 32): the NAS budget")
    res["pruning"] = {**pinfo, "nas_budget_speedup": budget}

    nas_runs, nas_cfg = nas_arm(base, run, ex, train, holdout, budget)
    res["nas_config"] = nas_cfg.to_dict()
    res["nas_search"] = {k: _summary(r, s) for k, (r, s) in nas_runs.items()}
    chosen_alg = max(nas_runs, key=lambda k: nas_runs[k][0].search.confirmed.score)  # by holdout score
    res["nas_chosen_algorithm"] = chosen_alg
    nas_res = nas_runs[chosen_alg][0]
    sn = nas_res.supernet
    largest = recalibrate_bn(sn.extract(sn.max_config()), train, batches=BN_BATCHES)
    res["supernet_largest_subnet"] = {"accuracy": _acc(largest, test), "holdout_accuracy": _acc(largest, holdout)}

    arms = {"nas": nas_res.model, "pruning": pruned}
    for arm, m in arms.items():
        r = {"accuracy_before_finetune": _acc(m, test), "holdout_before_finetune": _acc(m, holdout),
             "macs": count_cost(m, ex, "macs"), "params": count_cost(m, ex, "params")}
        # fine-tune checkpoints per subnet: another search outcome never resumes this one's
        key = "" if arm == "pruning" else "-" + hashlib.sha256(
            json.dumps(nas_res.config, sort_keys=True).encode()).hexdigest()[:10]
        m, r["finetune_seconds"], r["finetune"] = _finetune(m, train, run / f"finetune-{arm}{key}")
        r["accuracy"], r["holdout_accuracy"] = _acc(m, test), _acc(m, holdout)
        r["macs_fraction"], r["params_fraction"] = r["macs"] / base_macs, r["params"] / base_params
        p = run / f"{arm}-finetuned.safetensors"
        save(m, p)
        with torch.no_grad():
            r["artifact_reload_max_abs_diff"] = float((load(p)(ex[0]) - m(ex[0])).abs().max())
        r["artifact"] = str(p)
        _say(f"{name} {arm}: measuring ONNX Runtime speedup over the dense model ...")
        r["speedup_vs_dense"] = paired_speedups(base, m)
        res[arm] = r
        arms[arm] = m
    res["nas_vs_pruning_direct"] = paired_speedups(arms["pruning"], arms["nas"])  # pruned_ms / nas_ms
    res["verdict"] = _verdict(res["nas"], res["pruning"], res["nas_vs_pruning_direct"])
    return res


def print_report(res: dict) -> None:
    name = res["model"]
    rows = [["dense", f"{res['baseline']['accuracy']:.2f}", f"{res['baseline']['holdout_accuracy']:.2f}", "-",
             f"{res['baseline']['macs'] / 1e6:.2f}M", f"{res['baseline']['params'] / 1e3:.1f}k", "1.00x / 1.00x"]]
    for arm in ("pruning", "nas"):
        r = res[arm]
        sp = r["speedup_vs_dense"]
        rows.append([arm, f"{r['accuracy']:.2f}", f"{r['holdout_accuracy']:.2f}", f"{r['accuracy_before_finetune']:.2f}",
                     f"{r['macs'] / 1e6:.2f}M ({r['macs_fraction']:.0%})", f"{r['params'] / 1e3:.1f}k",
                     f"{sp['b1']['speedup']:.2f}x / {sp['b32']['speedup']:.2f}x"])
    cols = ["model", "test acc %", "holdout %", "before ft", "MACs", "params", "ORT speedup b1 / b32"]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    s = res["settings"]
    print(f"\n{name} on MNIST: NAS vs structured pruning at equal measured ONNX Runtime latency ({s['threads']} threads; "
          f"supernet {s['supernet_steps']} sandwich steps, fine-tune {s['finetune_steps']} steps each)")
    print(line(cols))
    for r in rows:
        print(line(r))
    d = res["nas_vs_pruning_direct"]
    print(f"direct pair pruned/NAS time: b1 {d['b1']['speedup']:.2f}, b32 {d['b32']['speedup']:.2f} (above 1: NAS faster)")
    for alg, r in res["nas_search"].items():
        v = r["latency"].get("proxy_validation") or {}
        rho = ", ".join(f"b{x['batch_size']} {x['spearman']:.2f}" for x in v.get("per_input_set", []))
        print(f"NAS {alg}: {r['scored']} scored, {r['rejected_by_proxy']} rejected by the latency table, holdout "
              f"{100 * r['holdout_score']:.2f}%, {len(r['confirmations'])} measured whole; table rank correlation "
              f"(Spearman, {v.get('n', 0)} subnets): {rho}")
    print(f"supernet largest subnet (after sandwich training, BN recalibrated): "
          f"{res['supernet_largest_subnet']['accuracy']:.2f}% test")
    print(f"VERDICT: {res['verdict']['text']}", flush=True)


def main() -> None:
    only = os.environ.get("TORCHSLIM_BENCH_ONLY")
    names = [n.strip() for n in only.split(",") if n.strip()] if only else ["resnet8"]
    unknown = [n for n in names if n not in ("resnet8", "mobilenetv2")]
    if unknown:
        raise SystemExit(f"TORCHSLIM_BENCH_ONLY: unknown model(s) {unknown}; use resnet8, mobilenetv2")
    for name in names:
        with Timer() as t:
            res = {"load_average": os.getloadavg(), **bench_model(name)}
        res["total_seconds"] = t.seconds
        res["load_average_end"] = os.getloadavg()
        write_result(f"nas-{name}", res)
        print_report(res)


if __name__ == "__main__":
    main()
