"""Structured pruning with physical removal, side by side with Torch-Pruning.

CNNs (resnet8, mobilenetv2 on MNIST; the fully trained baselines of
benchmarks.common, trained once and cached): prune to 50% of the MACs

- ``torchslim``: torchslim.prune.structured (group L2, round_to 8, one
  channel fraction searched to the MAC target);
- ``torchslim+blocks``: torchslim.prune.remove_blocks first (identity
  residual blocks, least output change on training images first; as many as
  leave the model above 55% of its MACs), then structured channels to the
  same 50% MAC target. Fewer layers also means fewer per-op costs, which is
  what limits the speed of these small models;
- ``torchslim+blocks+lat``: the same, with ``allocation="latency"``: each
  channel group's cut scaled by its measured time saved per MAC (ONNX
  Runtime, batch 1 and 32, THREADS threads; measured at pruning time);
- ``torchslim+lat-target``: the same blocks out, then a measured latency
  target instead of the MAC target: channels (multiples of 16, ONNX
  Runtime's channel block on AVX-512) cut until ONNX Runtime runs the model
  at least 1.67x faster than the dense one at batch 1 and at batch 32
  (``structured(target="latency")``; the slower batch size decides), then
  to the MAC target if the MACs are still above it;
- ``torchslim+greedy``: the same blocks out as ``torchslim+blocks``, then
  ``structured(target="latency", allocation="greedy", mac_ratio=0.5)``: one
  channel group narrowed a step (to a multiple of 8 or 16) at a time, each
  step the one that saves the most ONNX Runtime time (batch 1 and 32, plus
  MACs while above the MAC target) per unit of first-order Taylor importance
  lost, until the model has lost 50% of its MACs AND ONNX Runtime runs it at
  least 1.67x faster than the dense one at both batch sizes (confirmed with
  alternating pairs; GREEDY_TARGET); NetAdapt-style (Yang et al. 2018);
- ``torch-pruning``: Torch-Pruning's MetaPruner (GroupMagnitudeImportance
  p=2, the same round_to, its ratio bisected to the same MAC target, MACs
  counted by the same profiler);

then fine-tune each with the same budget (FT_EPOCHS epochs through
torchslim.train.fit on the training split minus a 5k holdout) and print
accuracy (test; holdout too), MACs, params, pruning time and the latency
ratio dense/pruned measured with torchslim.analysis.latency.compare_latency
(alternating pairs, median of per-pair ratios) at THREADS threads, batch 1
and 32, three ways: eager PyTorch, eager with BatchNorm folded into the
convolutions (both models alike), and ONNX Runtime (fp32 export of both,
torchslim.export.OrtModel).

Transformers: the zoo ViT (attention heads + MLP units, 50% MACs, same
fine-tune budget for both tools) and the pretrained MiniLM (heads +
intermediate units, 30% of the MACs removed, no fine-tuning: cosine
similarity of the embeddings to the unpruned model on held-out sentences of
torchslim.zoo.text, split "eval").

Environment:
  TORCHSLIM_BENCH_ONLY=resnet8|mobilenetv2|vit|minilm (comma list) one part;
      results go to benchmarks/results/prune_structured-<part>.json
  TORCHSLIM_BENCH_ONLY=latency  re-measure only the latency, from the saved
      artifacts (~/.cache/torchslim/bench/structured-*.safetensors) and the
      cached baselines (for a quiet machine); prune_structured-latency.json
  TORCHSLIM_BENCH_ONLY=report   print one table from the saved JSON files
  TORCHSLIM_BENCH_ONLY=widths   latency of wider untrained variants
  TORCHSLIM_BENCH_FT_EPOCHS (default 1; another value adds -ft<N> to the
      result and artifact names, so budgets are kept side by side), TORCHSLIM_BENCH_LAT_REPEATS (30),
  TORCHSLIM_BENCH_FT_STEPS (cap on fine-tune steps per epoch: smoke runs only)
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings

import torch

from benchmarks.common import RESULTS, Timer, baseline, baseline_path, write_result
from torchslim.analysis.evaluate import evaluate
from torchslim.analysis.latency import compare_latency, speedup_fn
from torchslim.artifact import load, save
from torchslim.artifact.specs import set_submodule
from torchslim.core.scope import Scope
from torchslim.prune import count_cost, remove_blocks, residual_blocks, structured
from torchslim.train import TrainConfig, fit
from torchslim.zoo import build_model, load_dataset
from torchslim.zoo.data import cache_dir, split_train

THREADS = 2
FT_EPOCHS = int(os.environ.get("TORCHSLIM_BENCH_FT_EPOCHS", 1))
LAT_REPEATS = int(os.environ.get("TORCHSLIM_BENCH_LAT_REPEATS", 30))
SUFFIX = f"-ft{FT_EPOCHS}" if FT_EPOCHS != 1 else ""  # result and artifact names of another fine-tune budget
FT_MAX_STEPS = int(os.environ["TORCHSLIM_BENCH_FT_STEPS"]) if os.environ.get("TORCHSLIM_BENCH_FT_STEPS") else None
MAC_TARGET = 0.5  # fraction of the MACs removed (CNNs, ViT)
MINILM_TARGET = 0.3  # MiniLM has no fine-tune: a milder cut
BLOCKS_KEEP_AT_LEAST = 0.55  # remove_blocks stops before the MACs fall below this fraction
# the same for torchslim+lat-target: at batch 1 these small models pay per operator, so fewer layers is what
# buys speed there (channel cuts alone would have to go far below the MAC target)
LAT_BLOCKS_KEEP_AT_LEAST = float(os.environ.get("TORCHSLIM_BENCH_LAT_BLOCKS_KEEP", 0.4))
ROUND_TO = 8
HOLDOUT = 5000
CLASSIFIER = {"resnet8": "fc", "mobilenetv2": "classifier", "vit": "head"}
FINETUNE = {
    "resnet8": dict(lr=1e-3, optimizer="adam"),
    "mobilenetv2": dict(lr=1e-3, optimizer="adam"),
    "vit": dict(lr=5e-4, optimizer="adamw", weight_decay=0.05),
}
IMAGE = (1, 28, 28)
TOOLS = ("torchslim", "torchslim+blocks", "torchslim+blocks+lat", "torchslim+lat-target", "torchslim+lat-target+kd",
         "torchslim+greedy+kd", "torch-pruning", "torch-pruning+kd")
KD_CONFIG = dict(temperature=4.0, alpha=0.7)  # the "+kd" fine-tunes: soft targets from the dense model
# TORCHSLIM_BENCH_TOOLS=a,b: run only these tools of the CNN parts and merge them into the part's saved JSON
ONLY_TOOLS = [t.strip() for t in os.environ.get("TORCHSLIM_BENCH_TOOLS", "").split(",") if t.strip()]
LATENCY_TARGET = 0.4  # torchslim+lat-target: remove 40% of the latency (1.67x; a margin over 1.6x for noise)
# torchslim+greedy+kd: its latency target (1.67x, as torchslim+lat-target) and its block floor
GREEDY_TARGET = float(os.environ.get("TORCHSLIM_BENCH_GREEDY_TARGET", 0.4))
GREEDY_STEPS = tuple(int(v) for v in os.environ.get("TORCHSLIM_BENCH_GREEDY_STEPS", "8,16").split(","))
GREEDY_BLOCKS_KEEP = float(os.environ.get("TORCHSLIM_BENCH_GREEDY_BLOCKS_KEEP", BLOCKS_KEEP_AT_LEAST))
ORT_ROUND_TO = 16  # channel multiple of torchslim+lat-target: ONNX Runtime's NCHWc block on AVX-512 CPUs


def bench_dir():
    d = cache_dir() / "bench"
    d.mkdir(parents=True, exist_ok=True)
    return d


def artifact_path(name: str, tool: str):
    return bench_dir() / f"structured-{name}-{tool.replace('+', '_')}{SUFFIX}.safetensors"


def _data():
    train, holdout = split_train(load_dataset("mnist", "train"), HOLDOUT, seed=0)
    return train, holdout, load_dataset("mnist", "test")


def finetune(model, name: str, train, teacher=None):
    """The fixed fine-tune budget (FT_EPOCHS epochs); with ``teacher``, the
    loss is torchslim.distill's soft targets from the dense model (KD_CONFIG)
    instead of plain cross-entropy: the same epochs, batches and optimizer."""
    cfg = TrainConfig(epochs=FT_EPOCHS, batch_size=128, scheduler="cosine", seed=1, max_steps_per_epoch=FT_MAX_STEPS,
                      **FINETUNE[name])
    loss = None
    if teacher is not None:
        from torchslim.distill import DistillConfig, make_loss

        loss = make_loss(DistillConfig(**KD_CONFIG), teacher.eval(), model)
    with Timer() as t:
        fit(model, train, cfg, progress=False, loss_fn=loss)
    return model.eval(), t.seconds


def _acc(model, data) -> float:
    return 100.0 * evaluate(model.eval(), data)["accuracy"]


# ------------------------------------------------------------------ latency
def _bn_folded(model):
    from torchslim.quantize.bnfold import fold_batchnorm

    m = copy.deepcopy(model).eval()
    fold_batchnorm(m)
    return m


def _ort(model, inputs, path):
    from torchslim.export import to_onnx
    from torchslim.export.runtime import OrtModel

    return OrtModel(to_onnx(model.eval(), path, inputs), threads=THREADS)


def latency_table(base, pruned, make_inputs, *, kinds=("eager", "eager_bnfold", "ort")) -> dict:
    """{kind: {b1|b32: speedup, ms}}: the dense and the pruned model timed
    alternately (compare_latency) at THREADS threads."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            if kind == "eager":
                a, b = base, pruned
            elif kind == "eager_bnfold":
                a, b = _bn_folded(base), _bn_folded(pruned)
            else:
                a, b = _ort(base, make_inputs(1), f"{tmp}/a.onnx"), _ort(pruned, make_inputs(1), f"{tmp}/b.onnx")
            out[kind] = {}
            for bs in (1, 32):
                r = compare_latency(a, b, make_inputs(bs), threads=THREADS, repeats=LAT_REPEATS)
                out[kind][f"b{bs}"] = {"speedup": r["ratio_median"], "base_ms": r["a_median_ms"],
                                       "pruned_ms": r["b_median_ms"], "ratio_p10": r["ratio_p10"],
                                       "ratio_p90": r["ratio_p90"]}
    return out


def _image_inputs(bs: int):
    g = torch.Generator().manual_seed(bs)
    return (torch.rand(bs, *IMAGE, generator=g),)


# ------------------------------------------------------------------ Torch-Pruning
def _bisect(run, target: float):
    """Bisection of a peer's pruning ratio until ``run(ratio)`` removes
    ``target`` of the MACs (within 1% of it); the closest candidate."""
    lo, hi, best = 0.0, 0.95, None
    for _ in range(14):
        mid = (lo + hi) / 2
        m, red = run(mid)
        if best is None or abs(red - target) < abs(best[1] - target):
            best = (m, red, mid)
        if abs(red - target) <= 0.01 * target:
            break
        lo, hi = (mid, hi) if red < target else (lo, mid)
    return best


def tp_prune_cnn(model, example, ignored: list[str], target: float):
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

    return _bisect(run, target)


def tp_prune_vit(model, example, target: float):
    """Torch-Pruning on the zoo ViT: whole heads of the separate q/k/v
    projections (num_heads, prune_num_heads=True, prune_head_dims=False,
    head_pruning_ratio = pruning_ratio) and MLP hidden units; the residual
    width (patch_embed, attn.proj, mlp.fc2 outputs) and the head are kept,
    as in torchslim's scope."""
    import torch_pruning as tp

    base = count_cost(model, example, "macs")

    def run(ratio):
        m = copy.deepcopy(model)
        heads = {lin: blk.attn.num_heads for blk in m.blocks for lin in (blk.attn.q, blk.attn.k, blk.attn.v)}
        ignored = [m.patch_embed, m.head] + [b.attn.proj for b in m.blocks] + [b.mlp.fc2 for b in m.blocks]
        pr = tp.pruner.MetaPruner(m, example[0], importance=tp.importance.GroupMagnitudeImportance(p=2),
                                  pruning_ratio=ratio, ignored_layers=ignored, num_heads=heads,
                                  prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=ratio)
        pr.step()
        return m, 1.0 - count_cost(m, example, "macs") / base

    return _bisect(run, target)


def tp_prune_bert(model, example, target: float):
    """Torch-Pruning on MiniLM (HF BertModel inside): whole heads of
    query/key/value (num_heads dict) and intermediate units; the hidden size
    (embeddings, attention.output.dense, output.dense) is kept. The HF
    attention modules' head counts are updated afterwards, as Torch-Pruning's
    own BERT example does."""
    import torch_pruning as tp

    base = count_cost(model, example, "macs")

    def run(ratio):
        m = copy.deepcopy(model)
        layers = m.bert.encoder.layer
        heads = {}
        ignored = [m.bert.embeddings]
        for lay in layers:
            s = lay.attention.self
            heads.update({lin: s.num_attention_heads for lin in (s.query, s.key, s.value)})
            ignored += [lay.attention.output.dense, lay.output.dense]
        if getattr(m.bert, "pooler", None) is not None:
            ignored.append(m.bert.pooler)
        pr = tp.pruner.MetaPruner(m, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                  pruning_ratio=ratio, ignored_layers=ignored, num_heads=heads,
                                  prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=ratio)
        pr.step()
        for lay in layers:
            s = lay.attention.self
            s.num_attention_heads = pr.num_heads[s.query]
            s.all_head_size = s.query.out_features
        return m, 1.0 - count_cost(m, example, "macs") / base

    return _bisect(run, target)


# ------------------------------------------------------------------ CNNs
def ort_speedup(dense, cand) -> float:
    """Latency weight measurement for allocation="latency": both exported to
    ONNX, ONNX Runtime at THREADS threads, compare_latency at batch 1 and 32,
    mean of the two median ratios."""
    return speedup_fn([_image_inputs(1), _image_inputs(32)], runtime="onnxruntime", threads=THREADS, repeats=15,
                      reduce="mean")(dense, cand)


def _remove_blocks(base, ex, calib, keep_at_least: float = BLOCKS_KEEP_AT_LEAST):
    """Identity residual blocks out, least output change first, as many as
    leave at least ``keep_at_least`` of the MACs: (model, removed names)."""
    total = count_cost(base, ex, "macs")
    blocks = residual_blocks(base, ex)
    ranked = remove_blocks(base, ex, count=len(blocks), calib_data=calib).torchslim_blocks["removed"]
    n, work = 0, copy.deepcopy(base)
    for name in ranked:  # least important first
        set_submodule(work, name, blocks[name])
        if count_cost(work, ex, "macs") < keep_at_least * total:
            break
        n += 1
    if not n:
        return base, []
    m = remove_blocks(base, ex, count=n, calib_data=calib)
    return m, m.torchslim_blocks["removed"]


def _blocks_then_channels(base, ex, calib, allocation: str = "uniform"):
    """Blocks out (``_remove_blocks``), then channels to the MAC target."""
    total = count_cost(base, ex, "macs")
    m, removed = _remove_blocks(base, ex, calib)
    rest = 1.0 - (1.0 - MAC_TARGET) * total / count_cost(m, ex, "macs")
    p = structured(m, ex, ratio=rest, target="macs", importance="l2", round_to=ROUND_TO, allocation=allocation,
                   latency_fn=ort_speedup if allocation == "latency" else None)
    p.torchslim_blocks = {"removed": removed}
    return p


def _latency_target(base, ex, calib):
    """Blocks out (``_remove_blocks``), then the latency target: channels cut
    (round_to ORT_ROUND_TO) until ONNX Runtime runs the model at least
    1 / (1 - LATENCY_TARGET) times faster than the dense one at batch 1 AND
    at batch 32 (the slower of the two decides); then, if the MACs are still
    above the MAC target, channels to the MAC target as well."""
    total = count_cost(base, ex, "macs")
    m, removed = _remove_blocks(base, ex, calib, LAT_BLOCKS_KEEP_AT_LEAST)
    vs_dense = speedup_fn([_image_inputs(1), _image_inputs(32)], runtime="onnxruntime", threads=THREADS,
                          repeats=15, reduce="min")
    p = structured(m, ex, ratio=LATENCY_TARGET, target="latency", importance="l2", round_to=ORT_ROUND_TO,
                   latency_fn=lambda _blocks_removed, cand: vs_dense(base, cand))  # speedup over the dense model
    info = {"blocks_removed": removed, "search_measured_reduction": p.torchslim_structured["achieved_reduction"],
            "groups": p.torchslim_structured["groups"]}
    if count_cost(p, ex, "macs") > (1.0 + 0.01) * (1.0 - MAC_TARGET) * total:
        rest = 1.0 - (1.0 - MAC_TARGET) * total / count_cost(p, ex, "macs")
        p = structured(p, ex, ratio=rest, target="macs", importance="l2", round_to=ORT_ROUND_TO)
        info["then_macs_cut"] = rest
    p.torchslim_latency_target = info
    return p


def _greedy(base, ex, calib):
    """Blocks out (``_remove_blocks``), then the measured greedy allocation
    (ONNX Runtime, batch 1 and 32) to the latency target and the MAC target."""
    from torchslim.analysis.latency import time_fn

    m, removed = _remove_blocks(base, ex, calib, GREEDY_BLOCKS_KEEP)
    sets = [_image_inputs(1), _image_inputs(32)]
    p = structured(m, ex, ratio=GREEDY_TARGET, target="latency", allocation="greedy", mac_ratio=MAC_TARGET,
                   importance="taylor", calib_data=calib, reference=base, greedy_steps=GREEDY_STEPS,
                   time_fn=time_fn(sets, runtime="onnxruntime", threads=THREADS, repeats=[200, 12], warmup=10),
                   latency_fn=speedup_fn(sets, runtime="onnxruntime", threads=THREADS, repeats=40, reduce="min"))
    g = p.torchslim_structured["greedy"]
    p.torchslim_greedy = {"blocks_removed": removed, "greedy_steps": len(g["steps"]),
                          "search_confirmed_speedup": g["confirmed_speedup"],
                          "groups": p.torchslim_structured["groups"]}
    return p


def bench_cnn(name: str) -> dict:
    base, info = baseline(name, progress=False)
    base.eval()
    train, holdout, test = _data()
    ex = _image_inputs(1)
    res = {"baseline_source": "benchmarks.common.baseline (full recipe)", "baseline_train": info.get("train"),
           "finetune": {"epochs": FT_EPOCHS, "data": f"mnist train minus {HOLDOUT} holdout", **FINETUNE[name]}}
    base_macs, base_params = count_cost(base, ex, "macs"), count_cost(base, ex, "params")
    res["baseline"] = {"accuracy": _acc(base, test), "holdout_accuracy": _acc(base, holdout),
                       "macs": base_macs, "params": base_params}
    x_check = torch.rand(4, *IMAGE)
    calib = holdout.take(512)

    makers = {
        "torchslim": lambda: (structured(base, ex, ratio=MAC_TARGET, target="macs", importance="l2",
                                         round_to=ROUND_TO), lambda m: {}),
        "torchslim+blocks": lambda: (_blocks_then_channels(base, ex, calib),
                                     lambda m: {"blocks_removed": m.torchslim_blocks["removed"]}),
        "torchslim+blocks+lat": lambda: (_blocks_then_channels(base, ex, calib, allocation="latency"),
                                         lambda m: {"blocks_removed": m.torchslim_blocks["removed"],
                                                    "latency_weights": m.torchslim_structured["latency_weights"]}),
        "torchslim+lat-target": lambda: (_latency_target(base, ex, calib), lambda m: m.torchslim_latency_target),
        "torchslim+greedy+kd": lambda: (_greedy(base, ex, calib), lambda m: m.torchslim_greedy),
        "torch-pruning": lambda: _tp(base, ex, name),
    }
    makers["torchslim+lat-target+kd"] = makers["torchslim+lat-target"]
    makers["torch-pruning+kd"] = makers["torch-pruning"]
    pruned = {}
    for tool in ONLY_TOOLS or TOOLS:
        if tool not in makers:
            raise SystemExit(f"TORCHSLIM_BENCH_TOOLS: unknown tool {tool!r}; use {list(makers)}")
        try:
            with warnings.catch_warnings(), Timer() as t:
                warnings.simplefilter("ignore")
                m, extra = makers[tool]()
            pruned[tool] = (m, t.seconds, extra(m))
        except Exception as e:  # keep the other numbers if the peer fails, and say why
            if not tool.startswith("torch-pruning"):
                raise
            res[f"{tool}_error"] = f"{type(e).__name__}: {e}"

    for tool, (m, secs, extra) in pruned.items():
        m.eval()
        with torch.no_grad():
            same_shape = tuple(m(x_check).shape) == tuple(base(x_check).shape)
        r = {"prune_seconds": secs, **extra, "macs": count_cost(m, ex, "macs"), "params": count_cost(m, ex, "params"),
             "output_shape_unchanged": same_shape, "accuracy_before_finetune": _acc(m, test)}
        m, r["finetune_seconds"] = finetune(m, name, train, teacher=base if tool.endswith("+kd") else None)
        if tool.endswith("+kd"):
            r["finetune_loss"] = {"distill": KD_CONFIG, "teacher": "the dense baseline"}
        r["accuracy"], r["holdout_accuracy"] = _acc(m, test), _acc(m, holdout)
        r["accuracy_drop"] = res["baseline"]["accuracy"] - r["accuracy"]
        r["macs_fraction"] = r["macs"] / base_macs
        p = artifact_path(name, tool)
        save(m, p)
        with torch.no_grad():
            r["artifact_reload_max_abs_diff"] = float((load(p)(x_check) - m(x_check)).abs().max())
        r["artifact"] = str(p)
        r["latency"] = latency_table(base, m, _image_inputs)
        res[tool] = r
        _partial(f"{name} {tool}", r)
    return res


def _tp(base, ex, name):
    m, _, ratio = tp_prune_cnn(base, ex, [CLASSIFIER[name]], MAC_TARGET)
    return m, lambda _m: {"tp_pruning_ratio": ratio}


# ------------------------------------------------------------------ transformers
def bench_vit() -> dict:
    base, info = baseline("vit", progress=False)
    base.eval()
    train, holdout, test = _data()
    ex = _image_inputs(1)
    base_macs = count_cost(base, ex, "macs")
    res = {"baseline_source": "benchmarks.common.baseline (full recipe)",
           "finetune": {"epochs": FT_EPOCHS, **FINETUNE["vit"]},
           "baseline": {"accuracy": _acc(base, test), "holdout_accuracy": _acc(base, holdout), "macs": base_macs,
                        "params": count_cost(base, ex, "params")}}
    scope = Scope(patterns=(r"blocks\.\d+\.attn\.[qkv]", r"blocks\.\d+\.mlp\.fc1"))  # heads + MLP units only
    pruned = {}
    with Timer() as t, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = structured(base, ex, ratio=MAC_TARGET, target="macs", importance="l2", scope=scope)
    pruned["torchslim"] = (m, t.seconds)
    try:
        with Timer() as t:
            m, _, _ = tp_prune_vit(base, ex, MAC_TARGET)
        pruned["torch-pruning"] = (m, t.seconds)
    except Exception as e:
        res["torch-pruning_error"] = f"{type(e).__name__}: {e}"
    for tool, (m, secs) in pruned.items():
        m.eval()
        r = {"prune_seconds": secs, "heads": [blk.attn.num_heads for blk in m.blocks],
             "mlp_units": [blk.mlp.fc1.out_features for blk in m.blocks], "macs": count_cost(m, ex, "macs"),
             "params": count_cost(m, ex, "params"), "accuracy_before_finetune": _acc(m, test)}
        r["macs_fraction"] = r["macs"] / base_macs
        m, r["finetune_seconds"] = finetune(m, "vit", train)
        r["accuracy"], r["holdout_accuracy"] = _acc(m, test), _acc(m, holdout)
        r["accuracy_drop"] = res["baseline"]["accuracy"] - r["accuracy"]
        p = artifact_path("vit", tool)
        save(m, p)
        r["artifact"] = str(p)
        r["latency"] = latency_table(base, m, _image_inputs, kinds=("eager", "ort"))
        res[tool] = r
        _partial(f"vit {tool}", r)
    return res


def _minilm_inputs(bs: int, seq: int = 64):
    from torchslim.export.inputs import full_token_batch

    return full_token_batch(bs, seq)


def _minilm_eval():
    from torchslim.zoo.minilm import tokenizer
    from torchslim.zoo.text import sentences

    sents = sentences(256, split="eval")
    enc = tokenizer()(sents, padding=True, truncation=True, max_length=128, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _cosine(base, m, ids, mask) -> dict:
    with torch.no_grad():
        a = torch.cat([base(ids[i:i + 32], mask[i:i + 32]) for i in range(0, len(ids), 32)])
        b = torch.cat([m(ids[i:i + 32], mask[i:i + 32]) for i in range(0, len(ids), 32)])
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
    nn_agree = float(((a @ a.T).fill_diagonal_(-2).argmax(1) == (b @ b.T).fill_diagonal_(-2).argmax(1)).float().mean())
    return {"embedding_cosine_mean": float(cos.mean()), "embedding_cosine_min": float(cos.min()),
            "nearest_neighbour_agreement": nn_agree}


def bench_minilm() -> dict:
    base = build_model("minilm").eval()
    ids, mask = _minilm_eval()
    ex = _minilm_inputs(1)
    base_macs = count_cost(base, ex, "macs")
    res = {"eval": f"{len(ids)} sentences of torchslim.zoo.text split 'eval'", "no_finetune": True,
           "mac_target_fraction_removed": MINILM_TARGET,
           "baseline": {"macs_seq64": base_macs, "params": count_cost(base, ex, "params")}}
    pruned = {}
    with Timer() as t, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = structured(base, ex, ratio=MINILM_TARGET, target="macs", importance="l2")
    pruned["torchslim"] = (m, t.seconds)
    try:
        with Timer() as t, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m, _, _ = tp_prune_bert(base, ex, MINILM_TARGET)
        pruned["torch-pruning"] = (m, t.seconds)
    except Exception as e:
        res["torch-pruning_error"] = f"{type(e).__name__}: {e}"
    for tool, (m, secs) in pruned.items():
        m.eval()
        layers = m.bert.encoder.layer
        r = {"prune_seconds": secs, "heads": [lay.attention.self.query.out_features // lay.attention.self.attention_head_size
                                                for lay in layers],
             "intermediate": [lay.intermediate.dense.out_features for lay in layers],
             "macs": count_cost(m, ex, "macs"), "params": count_cost(m, ex, "params")}
        r["macs_fraction"] = r["macs"] / base_macs
        r.update(_cosine(base, m, ids, mask))
        p = artifact_path("minilm", tool)
        save(m, p)
        with torch.no_grad():
            r["artifact_reload_max_abs_diff"] = float((load(p)(ids[:4], mask[:4]) - m(ids[:4], mask[:4])).abs().max())
        r["artifact"] = str(p)
        r["latency"] = latency_table(base, m, _minilm_inputs, kinds=("eager", "ort"))
        res[tool] = r
        _partial(f"minilm {tool}", r)
    return res


# ------------------------------------------------------------------ latency only
def bench_latency() -> dict:
    """Latency only, from the saved artifacts and the cached baselines."""
    out = {}
    for name in ("resnet8", "mobilenetv2", "vit", "minilm"):
        if not any(artifact_path(name, t).exists() for t in TOOLS):
            continue
        if name == "minilm":
            base, inputs, kinds = build_model("minilm").eval(), _minilm_inputs, ("eager", "ort")
        else:
            if not baseline_path(name).exists():
                print(f"[structured] latency {name}: no cached baseline at {baseline_path(name)}; skipped", flush=True)
                continue
            base = baseline(name, progress=False)[0].eval()
            inputs, kinds = _image_inputs, (("eager", "ort") if name == "vit" else ("eager", "eager_bnfold", "ort"))
        for tool in TOOLS:
            p = artifact_path(name, tool)
            if not p.exists():
                continue
            print(f"[structured] latency {name} {tool} ...", flush=True)
            out.setdefault(name, {})[tool] = {"latency": latency_table(base, load(p).eval(), inputs, kinds=kinds)}
    return out


def bench_widths() -> dict:
    """Latency only (weights untrained: speed does not depend on their values):
    wider variants of the CNNs pruned to 50% MACs."""
    out = {}
    for name, kw in (("resnet8", {"width": 32}), ("resnet8", {"width": 64}), ("mobilenetv2", {"width_mult": 2.0})):
        torch.manual_seed(0)
        m = build_model(name, dataset="mnist", **kw).eval()
        ex = _image_inputs(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = structured(m, ex, ratio=MAC_TARGET, target="macs", round_to=ROUND_TO).eval()
        out[f"{name} {kw}"] = {"macs_fraction": count_cost(p, ex, "macs") / count_cost(m, ex, "macs"),
                               "latency": latency_table(m, p, _image_inputs)}
    return out


# ------------------------------------------------------------------ output
def _lat_cells(r: dict, kinds=("eager", "eager_bnfold", "ort")) -> list[str]:
    lat = r.get("latency", {})
    if "b1" in lat:  # older result files: eager only
        lat = {"eager": lat}
    return [f"{lat[k]['b1']['speedup']:.2f}x / {lat[k]['b32']['speedup']:.2f}x" if k in lat else "-" for k in kinds]


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A plain fixed-width table (a log file keeps it whole; rich wraps at 80 columns off a terminal)."""
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(columns)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    print(f"\n{title}\n{line(columns)}\n" + "\n".join(line(r) for r in rows), flush=True)


def _print(results: dict) -> None:
    lat_override = results.get("latency_only", {})
    rows = []
    for name in ("resnet8", "mobilenetv2", "vit"):
        res = results.get(name)
        if not res:
            continue
        b = res["baseline"]
        if "holdout_accuracy" not in b:  # a result file of an older version of this benchmark
            continue
        rows.append([f"{name} dense", f"{b['accuracy']:.2f} (holdout {b['holdout_accuracy']:.2f})",
                     f"{b['macs'] / 1e6:.2f}M", f"{b['params'] / 1e3:.1f}k", "-", "-", "-", "-"])
        for tool in TOOLS:
            if tool not in res:
                if f"{tool}_error" in res and tool == "torch-pruning":
                    rows.append([f"{name} {tool}", res[f"{tool}_error"], "", "", "", "", "", ""])
                continue
            r = {**res[tool], **lat_override.get(name, {}).get(tool, {})}
            rows.append([f"{name} {tool}", f"{r['accuracy']:.2f} (before ft {r['accuracy_before_finetune']:.2f})",
                         f"{r['macs'] / 1e6:.2f}M ({r['macs_fraction']:.1%})", f"{r['params'] / 1e3:.1f}k",
                         *_lat_cells(r), f"{r['prune_seconds']:.1f}s"])
    print_table(f"structured pruning to {1 - MAC_TARGET:.0%} MACs, fine-tune {FT_EPOCHS} epoch(s); speedup = median "
                f"of alternating dense/pruned pairs, batch 1 / batch 32, {THREADS} threads (state the machine load)",
                ["model", "test acc %", "MACs", "params", "eager b1/b32", "eager BN-folded", "ONNX Runtime",
                 "prune time"], rows)
    mi = results.get("minilm")
    if mi:
        rows = []
        for tool in ("torchslim", "torch-pruning"):
            if tool not in mi:
                rows.append([tool, mi.get(f"{tool}_error", "failed"), "", "", "", "", ""])
                continue
            r = {**mi[tool], **lat_override.get("minilm", {}).get(tool, {})}
            rows.append([tool, f"{r['embedding_cosine_mean']:.4f} / {r['embedding_cosine_min']:.4f} / "
                         f"{r['nearest_neighbour_agreement']:.3f}", f"{r['macs_fraction']:.1%}",
                         f"{r['heads']} / {r['intermediate'][0]}", *_lat_cells(r, ("eager", "ort")),
                         f"{r['prune_seconds']:.1f}s"])
        print_table(f"MiniLM, {MINILM_TARGET:.0%} of MACs removed, no fine-tune ({mi['eval']}); latency batch 1 / 32 "
                    "x 64 tokens", ["tool", "cosine mean / min / NN agree", "MACs", "heads / intermediate",
                                    "eager b1/b32", "ONNX Runtime", "prune time"], rows)
    if "widths" in results:
        print_table("wider variants, latency only (untrained weights), 50% MACs",
                    ["model", "MACs", "eager b1/b32", "eager BN-folded", "ONNX Runtime"],
                    [[k, f"{r['macs_fraction']:.1%}", *_lat_cells(r)] for k, r in results["widths"].items()])


def _partial(name: str, res: dict) -> None:
    """One line per finished piece, so a long run shows its numbers as it goes."""
    print(f"[structured] {name} done: " + json.dumps(res, default=lambda v: round(v, 4) if isinstance(v, float) else str(v)),
          flush=True)


def _load_parts() -> dict:
    """The saved parts of this fine-tune budget (prune_structured-<part>[-ftN].json)
    and the latency-only re-measurement, if any."""
    merged: dict = {}
    for part in ("resnet8", "mobilenetv2", "vit", "minilm", "widths"):
        p = RESULTS / f"prune_structured-{part}{SUFFIX if part != 'widths' else ''}.json"
        if p.exists():
            merged[part] = json.loads(p.read_text()).get(part)
    p = RESULTS / f"prune_structured-latency{SUFFIX}.json"
    if p.exists():
        merged["latency_only"] = json.loads(p.read_text()).get("models", {})
    return merged


PARTS = {"resnet8": lambda: bench_cnn("resnet8"), "mobilenetv2": lambda: bench_cnn("mobilenetv2"),
         "vit": bench_vit, "minilm": bench_minilm, "widths": bench_widths}


def main() -> None:
    torch.set_num_threads(1)  # training and evaluation; latency pairs use THREADS
    only = os.environ.get("TORCHSLIM_BENCH_ONLY")
    meta = {"threads": THREADS, "finetune_epochs": FT_EPOCHS, "finetune_max_steps": FT_MAX_STEPS, "latency_repeats": LAT_REPEATS,
            "mac_target_fraction_removed": MAC_TARGET, "round_to": ROUND_TO, "load_average": os.getloadavg()}
    if only == "report":
        _print(_load_parts())
        return
    if only == "latency":
        res = {**meta, "models": bench_latency()}
        res["load_average_end"] = os.getloadavg()
        write_result(f"prune_structured-latency{SUFFIX}", res)
        _print(_load_parts())
        return
    parts = [p.strip() for p in only.split(",")] if only else [p for p in PARTS if p != "widths"]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise SystemExit(f"TORCHSLIM_BENCH_ONLY: unknown part(s) {unknown}; use {sorted(PARTS)}, latency or report")
    for part in parts:
        print(f"[structured] {part} ...", flush=True)
        res = {**meta, part: PARTS[part]()}
        res["load_average_end"] = os.getloadavg()
        path = RESULTS / f"prune_structured-{part}{SUFFIX if part != 'widths' else ''}.json"
        if ONLY_TOOLS and path.exists():  # a subset of tools: merged into the saved part
            old = json.loads(path.read_text())
            old[part].update(res[part])
            old.setdefault("tool_runs", []).append({"tools": ONLY_TOOLS, **{k: v for k, v in res.items() if k != part}})
            res = old
        write_result(path.stem, res)
    _print(_load_parts())


if __name__ == "__main__":
    main()
