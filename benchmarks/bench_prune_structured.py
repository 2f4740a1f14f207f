"""Structured pruning with physical removal, side by side with Torch-Pruning.

CNNs (resnet8, mobilenetv2 on MNIST): prune to 50% of the MACs with
torchslim.prune.structured and with Torch-Pruning's MetaPruner (group L2
magnitude, the same round_to, its pruning ratio bisected to the same MAC
target, MACs counted by the same profiler), fine-tune both with the same
budget through torchslim.train.fit, and print accuracy, MACs, params, CPU
latency speedup (batch 1 and 32, alternating pairs, median of per-pair
ratios) and pruning time in one table.

Transformers: the zoo ViT (attention heads + MLP units, 50% MACs, same
fine-tune budget) and the pretrained MiniLM (heads + intermediate units,
no fine-tuning: cosine similarity of the embeddings to the unpruned model's).

Baselines: benchmarks.common.baseline(name) when its cached artifact exists;
otherwise a budget baseline trained here (BUDGET below) and cached, because
the common recipe (6 full MNIST epochs) takes over an hour on a shared 2-core
machine. The JSON result says which one was used.
"""
from __future__ import annotations

import copy
import os
import time
import warnings

import torch

from benchmarks.common import Timer, baseline, baseline_path, write_result
from torchslim.analysis.evaluate import evaluate
from torchslim.analysis.latency import compare_latency
from torchslim.artifact import load, save
from torchslim.core.scope import Scope
from torchslim.prune import count_cost, structured
from torchslim.train import TrainConfig, fit
from torchslim.zoo import build_model, load_dataset
from torchslim.zoo.data import cache_dir

THREADS = 2
BUDGET = {
    "baseline_steps": int(os.environ.get("TORCHSLIM_BENCH_BASE_STEPS", 300)),
    "finetune_steps": int(os.environ.get("TORCHSLIM_BENCH_FT_STEPS", 100)),
    "latency_repeats": int(os.environ.get("TORCHSLIM_BENCH_LAT_REPEATS", 30)),
}
MAC_TARGET = 0.5  # remove half of the MACs
ROUND_TO = 8
CNN_KWARGS = {"resnet8": {}, "mobilenetv2": {}}
CLASSIFIER = {"resnet8": "fc", "mobilenetv2": "classifier", "vit": "head"}


def _budget_baseline(name: str, kwargs: dict, lr: float, optimizer: str = "adam"):
    """A cached baseline trained for BUDGET['baseline_steps'] steps."""
    path = cache_dir() / "baselines" / f"budget-{name}-{BUDGET['baseline_steps']}.safetensors"
    if path.exists():
        return load(path), {"source": f"budget baseline ({BUDGET['baseline_steps']} steps, cached)"}
    torch.manual_seed(0)
    model = build_model(name, dataset="mnist", **kwargs)
    cfg = TrainConfig(epochs=1, batch_size=128, lr=lr, optimizer=optimizer, scheduler="cosine",
                      max_steps_per_epoch=BUDGET["baseline_steps"])
    fit(model, load_dataset("mnist", "train"), cfg, out_dir=path.with_suffix(".run"), progress=False)
    save(model, path)
    return model.eval(), {"source": f"budget baseline ({BUDGET['baseline_steps']} steps)"}


def get_baseline(name: str):
    if baseline_path(name).exists():
        m, info = baseline(name, progress=False)
        return m, {"source": "benchmarks.common.baseline", **info}
    lr = 1e-3 if name == "vit" else 2e-3
    return _budget_baseline(name, CNN_KWARGS.get(name, {}), lr, "adamw" if name == "vit" else "adam")


def finetune(model, name: str):
    cfg = TrainConfig(epochs=1, batch_size=128, lr=1e-3, optimizer="adam", scheduler="cosine",
                      max_steps_per_epoch=BUDGET["finetune_steps"], seed=1)
    with Timer() as t:
        fit(model, load_dataset("mnist", "train"), cfg, progress=False)
    return model.eval(), t.seconds


def _acc(model, test) -> float:
    return 100.0 * evaluate(model.eval(), test)["accuracy"]


def _latency(base, pruned, shape) -> dict:
    out = {}
    for b in (1, 32):
        x = (torch.rand(b, *shape),)
        r = compare_latency(base, pruned, x, threads=THREADS, repeats=BUDGET["latency_repeats"])
        out[f"b{b}"] = {"speedup": r["ratio_median"], "base_ms": r["a_median_ms"], "pruned_ms": r["b_median_ms"],
                        "ratio_p10": r["ratio_p10"], "ratio_p90": r["ratio_p90"]}
    return out


# ------------------------------------------------------------------ Torch-Pruning
def tp_prune(model, example, ignored: list[str], target: float):
    """Torch-Pruning MetaPruner (GroupMagnitudeImportance p=2, round_to), its
    uniform pruning ratio bisected until MACs drop by ``target``."""
    import torch_pruning as tp

    base = count_cost(model, example, "macs")

    def run(ratio):
        m = copy.deepcopy(model)
        pr = tp.pruner.MetaPruner(m, example[0], importance=tp.importance.GroupMagnitudeImportance(p=2),
                                  pruning_ratio=ratio, ignored_layers=[m.get_submodule(n) for n in ignored],
                                  round_to=ROUND_TO)
        pr.step()
        return m, 1.0 - count_cost(m, example, "macs") / base

    lo, hi, best = 0.0, 0.95, None
    for _ in range(14):
        mid = (lo + hi) / 2
        m, red = run(mid)
        if best is None or abs(red - target) < abs(best[1] - target):
            best = (m, red)
        if abs(red - target) <= 0.01 * target:
            break
        lo, hi = (mid, hi) if red < target else (lo, mid)
    return best


# ------------------------------------------------------------------ CNNs
def bench_cnn(name: str, test) -> dict:
    base, info = get_baseline(name)
    base.eval()
    shape = (1, 28, 28)
    ex = (torch.rand(1, *shape),)
    res = {"baseline_source": info.get("source"), "kwargs": CNN_KWARGS[name]}
    base_macs, base_params = count_cost(base, ex, "macs"), count_cost(base, ex, "params")
    res["baseline"] = {"accuracy": _acc(base, test), "macs": base_macs, "params": base_params}
    x_check = torch.rand(4, *shape)

    rows = {}
    # torchslim
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Timer() as t:
            ours = structured(base, ex, ratio=MAC_TARGET, target="macs", importance="l2", round_to=ROUND_TO)
    rows["torchslim"] = (ours, t.seconds)
    # Torch-Pruning
    try:
        with Timer() as t:
            theirs, _ = tp_prune(base, ex, [CLASSIFIER[name]], MAC_TARGET)
        rows["torch-pruning"] = (theirs, t.seconds)
    except Exception as e:  # keep our numbers if the peer fails
        res["torch-pruning_error"] = f"{type(e).__name__}: {e}"

    for tool, (m, secs) in rows.items():
        m.eval()
        with torch.no_grad():
            same_shape = tuple(m(x_check).shape) == tuple(base(x_check).shape)
        acc0 = _acc(m, test)
        m, ft_secs = finetune(m, name)
        r = {"prune_seconds": secs, "macs": count_cost(m, ex, "macs"), "params": count_cost(m, ex, "params"),
             "output_shape_unchanged": same_shape, "accuracy_before_finetune": acc0,
             "accuracy": _acc(m, test), "finetune_seconds": ft_secs, "latency": _latency(base, m, shape)}
        r["macs_fraction"] = r["macs"] / base_macs
        if tool == "torchslim":
            p = cache_dir() / "bench" / f"structured-{name}.safetensors"
            save(m, p)
            back = load(p)
            with torch.no_grad():
                r["artifact_reload_max_abs_diff"] = float((back(x_check) - m(x_check)).abs().max())
            r["artifact_bytes"] = p.stat().st_size
        res[tool] = r
    return res


# ------------------------------------------------------------------ transformers
def bench_vit(test) -> dict:
    base, info = get_baseline("vit")
    base.eval()
    shape = (1, 28, 28)
    ex = (torch.rand(1, *shape),)
    scope = Scope(patterns=(r"blocks\.\d+\.attn\.[qkv]", r"blocks\.\d+\.mlp\.fc1"))  # heads + MLP units only
    with Timer() as t, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = structured(base, ex, ratio=MAC_TARGET, target="macs", importance="l2", scope=scope)
    base_macs = count_cost(base, ex, "macs")
    r = {"baseline_source": info.get("source"), "baseline_accuracy": _acc(base, test), "prune_seconds": t.seconds,
         "heads": [blk.attn.num_heads for blk in m.blocks], "mlp_units": [blk.mlp.fc1.out_features for blk in m.blocks],
         "macs_fraction": count_cost(m, ex, "macs") / base_macs, "accuracy_before_finetune": _acc(m, test)}
    m, r["finetune_seconds"] = finetune(m, "vit")
    r["accuracy"] = _acc(m, test)
    r["latency"] = _latency(base, m, shape)
    return r


def bench_minilm() -> dict:
    from torchslim.zoo.minilm import tokenizer

    base = build_model("minilm").eval()
    tok = tokenizer()
    sentences = [f"sentence number {i} about {w} and compression of neural networks"
                 for i, w in enumerate(["cats", "dogs", "weather", "pruning", "music", "football", "cooking", "trains"] * 4)]
    enc = tok(sentences, padding="max_length", truncation=True, max_length=32, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    ex = (ids[:1], mask[:1])
    with Timer() as t, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = structured(base, ex, ratio=0.3, target="macs", importance="l2")
    m.eval()
    layers = m.bert.encoder.layer
    r = {"prune_seconds": t.seconds, "method": m.torchslim_structured["method"],
         "heads": [lay.attention.self.num_attention_heads for lay in layers],
         "intermediate": [lay.intermediate.dense.out_features for lay in layers],
         "macs_fraction": count_cost(m, ex, "macs") / count_cost(base, ex, "macs")}
    with torch.no_grad():
        cos = (base(ids, mask) * m(ids, mask)).sum(1)
    r["embedding_cosine_mean"] = float(cos.mean())
    r["embedding_cosine_min"] = float(cos.min())
    p = cache_dir() / "bench" / "structured-minilm.safetensors"
    save(m, p)
    back = load(p)
    with torch.no_grad():
        r["artifact_reload_max_abs_diff"] = float((back(ids[:4], mask[:4]) - m(ids[:4], mask[:4])).abs().max())
    lat = {}
    for b in (1, 32):
        rr = compare_latency(base, m, (ids[:b], mask[:b]), threads=THREADS, repeats=BUDGET["latency_repeats"])
        lat[f"b{b}"] = {"speedup": rr["ratio_median"], "base_ms": rr["a_median_ms"], "pruned_ms": rr["b_median_ms"]}
    r["latency"] = lat
    return r


def bench_widths() -> dict:
    """Latency only (weights untrained: speed does not depend on their values):
    wider variants of the CNNs pruned to 50% MACs, to show where the MAC cut
    turns into wall-clock speed."""
    out = {}
    for name, kw in (("resnet8", {"width": 32}), ("resnet8", {"width": 64}), ("mobilenetv2", {"width_mult": 2.0})):
        torch.manual_seed(0)
        m = build_model(name, dataset="mnist", **kw).eval()
        ex = (torch.rand(1, 1, 28, 28),)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = structured(m, ex, ratio=MAC_TARGET, target="macs", round_to=ROUND_TO).eval()
        out[f"{name} {kw}"] = {"macs_fraction": count_cost(p, ex, "macs") / count_cost(m, ex, "macs"),
                               "latency": _latency(m, p, (1, 28, 28))}
    return out


def _print(results: dict) -> None:
    from torchslim.cli.common import print_table

    rows = []
    for name in ("resnet8", "mobilenetv2"):
        res = results[name]
        b = res["baseline"]
        rows.append([f"{name} dense", f"{b['accuracy']:.2f}", f"{b['macs'] / 1e6:.2f}M", f"{b['params'] / 1e3:.1f}k",
                     "-", "-", "-", "-"])
        for tool in ("torchslim", "torch-pruning"):
            if tool not in res:
                rows.append([f"{name} {tool}", res.get(f"{tool}_error", "failed"), "", "", "", "", "", ""])
                continue
            r = res[tool]
            rows.append([f"{name} {tool}", f"{r['accuracy']:.2f} ({r['accuracy_before_finetune']:.2f})",
                         f"{r['macs'] / 1e6:.2f}M ({r['macs_fraction']:.1%})", f"{r['params'] / 1e3:.1f}k",
                         f"{r['latency']['b1']['speedup']:.2f}x", f"{r['latency']['b32']['speedup']:.2f}x",
                         f"{r['prune_seconds']:.1f}s", str(r["output_shape_unchanged"])])
    print_table(f"structured pruning to {1 - MAC_TARGET:.0%} MACs, fine-tune {BUDGET['finetune_steps']} steps, "
                f"latency median ratio, {THREADS} threads (shared machine)",
                ["model", "acc % (before ft)", "MACs", "params", "speedup b1", "speedup b32", "prune time", "shape ok"],
                rows)
    if "widths" in results:
        print_table("wider variants, latency only (untrained weights), 50% MACs", ["model", "MACs", "b1", "b32"],
                    [[k, f"{r['macs_fraction']:.1%}", f"{r['latency']['b1']['speedup']:.2f}x",
                      f"{r['latency']['b32']['speedup']:.2f}x"] for k, r in results["widths"].items()])
    v, mi = results["vit"], results["minilm"]
    print_table("transformers", ["model", "result"], [
        ["vit heads / MLP units", f"{v['heads']} / {v['mlp_units']}"],
        ["vit MACs", f"{v['macs_fraction']:.1%}"],
        ["vit accuracy dense -> pruned (before ft)",
         f"{v['baseline_accuracy']:.2f} -> {v['accuracy']:.2f} ({v['accuracy_before_finetune']:.2f})"],
        ["vit speedup b1 / b32", f"{v['latency']['b1']['speedup']:.2f}x / {v['latency']['b32']['speedup']:.2f}x"],
        ["minilm heads", str(mi["heads"])], ["minilm intermediate", str(mi["intermediate"])],
        ["minilm MACs", f"{mi['macs_fraction']:.1%}"],
        ["minilm embedding cosine to dense (mean/min)",
         f"{mi['embedding_cosine_mean']:.3f} / {mi['embedding_cosine_min']:.3f}"],
        ["minilm speedup b1 / b32", f"{mi['latency']['b1']['speedup']:.2f}x / {mi['latency']['b32']['speedup']:.2f}x"],
        ["minilm artifact reload max |diff|", f"{mi['artifact_reload_max_abs_diff']:.2e}"],
    ])


def _partial(name: str, res: dict) -> None:
    """One line per finished model, so a long run shows its numbers as it goes."""
    import json

    print(f"[structured] {name} done: " + json.dumps(res, default=lambda v: round(v, 4) if isinstance(v, float) else str(v)),
          flush=True)


def main() -> None:
    torch.set_num_threads(1)  # training and evaluation; latency pairs use THREADS
    test = load_dataset("mnist", "test")
    results = {"budget": BUDGET, "threads": THREADS, "mac_target_fraction_removed": MAC_TARGET, "round_to": ROUND_TO}
    only = os.environ.get("TORCHSLIM_BENCH_ONLY")
    for name in ("resnet8", "mobilenetv2"):
        if only and name not in only:
            continue
        print(f"[structured] {name} ...", flush=True)
        results[name] = bench_cnn(name, test)
        _partial(name, results[name])
    if not only or "vit" in only:
        print("[structured] vit ...", flush=True)
        results["vit"] = bench_vit(test)
        _partial("vit", results["vit"])
    if not only or "minilm" in only:
        print("[structured] minilm ...", flush=True)
        results["minilm"] = bench_minilm()
    if not only or "widths" in only:
        print("[structured] wider variants (latency only) ...", flush=True)
        results["widths"] = bench_widths()
    write_result("prune_structured" + (f"-{only.replace(',', '-')}" if only else ""), results)
    if not only:
        _print(results)
    else:
        import json

        print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
