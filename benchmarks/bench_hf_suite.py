"""Issue 12: torchslim and Torch-Pruning side by side on the Hugging Face suite
(``torchslim.testing.hf_suite``: every architecture in ``SUITE``, 18 today,
built from small configs, random init, offline), one model after another.

Every model is pruned twice, each tool called plainly, as a new user would:

- ``torchslim``: ``torchslim.prune.structured(model, example_inputs,
  ratio=0.5, target="macs")``, nothing else; then ``torchslim.save`` +
  ``torchslim.load`` of the result (the reloaded model must give the same
  outputs);
- ``torch-pruning`` (1.6.1): ``tp.pruner.MetaPruner(model, example_inputs,
  importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
  ignored_layers=[output layer])`` then ``pruner.step()``, on a fresh copy of
  the same model. The output layer is the one Torch-Pruning's README and HF
  examples leave out: ``lm_head`` (``get_output_embeddings()``), else the
  last ``nn.Linear`` of ``model.classifier``, else ``model.pooler`` (its BERT
  example); none for DistilBERT. Example inputs go in the form its HF
  examples use: a dict of keyword arguments (``prune_hf_bert.py``) for text
  models, the pixel tensor for image models (``prune_hf_vit.py``, README;
  inside a 1-tuple, see ``tp_inputs``).
  No ``num_heads``, no ``output_transform``, no attribute fix-ups after the
  step: that would be per-model expert set-up. Reaching the FLOPs goal is not
  asked of it; the table shows what ratio 0.5 gives.

Per tool and model: success or the error (type and first line), wall time of
the pruning call, FLOPs before/after (``torch.utils.flop_counter.
FlopCounterMode`` on the example inputs), primary output (``.logits``, else
``.last_hidden_state``, else the first tensor) of unchanged shape and finite,
and the batch-1 speedup over the original in eager PyTorch:
``torchslim.analysis.latency.compare_latency`` (alternating pairs, median of
the per-pair ratios original/pruned; above 1 = faster) on the first row of
the example inputs, at THREADS intra-op thread(s).

Handled = ran, output shape unchanged, outputs finite; for torchslim also
FLOPs <= FLOPS_GOAL of the original and saved + reloaded with the same
outputs (max abs difference <= RELOAD_TOL).

Environment:
  TORCHSLIM_BENCH_ONLY=name1,name2   a subset of hf_suite.SUITE; results go to
      benchmarks/results/hf_suite-subset.json (the full run writes hf_suite.json)
  TORCHSLIM_BENCH_PAIRS (default 30)   timing pairs per latency comparison
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import math
import os
import tempfile
import warnings
from importlib.metadata import PackageNotFoundError, version

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.bench_prune_structured import print_table
from benchmarks.common import Timer, write_result

THREADS = 1  # intra-op threads for everything (pruning, FLOPs, timing); models run one after another
PAIRS = int(os.environ.get("TORCHSLIM_BENCH_PAIRS", 30))
RATIO = 0.5  # what both tools are asked for
FLOPS_GOAL = 0.575  # torchslim's FLOPs left must be at most this fraction (ratio 0.5 on MACs, within 15%)
RELOAD_TOL = 1e-4  # max abs difference of the reloaded torchslim model's outputs
TOOLS = ("torchslim", "torch-pruning")


# ------------------------------------------------------------------ inputs and outputs
def run(model: nn.Module, inputs):
    """``model`` on ``inputs`` as hf_suite gives them: a tuple is passed
    positionally, a dict as keyword arguments. Eval mode, no grad."""
    model.eval()
    with torch.no_grad():
        return model(**inputs) if isinstance(inputs, dict) else model(*inputs)


def primary_output(out) -> torch.Tensor:
    """The output compared between models: ``.logits``, else
    ``.last_hidden_state``, else the first tensor."""
    for key in ("logits", "last_hidden_state"):
        t = getattr(out, key, None)
        if isinstance(t, torch.Tensor):
            return t
    if isinstance(out, torch.Tensor):
        return out
    values = out.values() if isinstance(out, dict) else out
    for v in values:
        if isinstance(v, torch.Tensor):
            return v
    raise TypeError(f"no tensor in the model's output ({type(out).__name__})")


def first_row(inputs):
    """The batch-1 inputs: the first row of every input tensor."""
    if isinstance(inputs, dict):
        return {k: v[:1] if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    return tuple(v[:1] if isinstance(v, torch.Tensor) else v for v in inputs)


def count_flops(model: nn.Module, inputs) -> int:
    """Total FLOPs of one forward pass on ``inputs`` (FlopCounterMode)."""
    counter = FlopCounterMode(display=False)
    with counter:
        run(model, inputs)
    return int(counter.get_total_flops())


def error_text(e: BaseException) -> str:
    """``Type: first line of the message``."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def is_text(inputs) -> bool:
    """Token ids (integer tensors) rather than pixels."""
    values = inputs.values() if isinstance(inputs, dict) else inputs
    return any(isinstance(v, torch.Tensor) and not v.is_floating_point() for v in values)


# ------------------------------------------------------------------ measurements
def check_pruned(original: nn.Module, pruned: nn.Module, inputs, ref: dict, *, pairs: int) -> dict:
    """Output shape, finiteness, FLOPs and the batch-1 speedup of ``pruned``
    over ``original``; each measurement records its own error."""
    r: dict = {}
    try:
        out = primary_output(run(pruned, inputs))
    except Exception as e:
        r["forward_error"] = error_text(e)
        return r
    r["output_shape"] = list(out.shape)
    r["output_shape_unchanged"] = r["output_shape"] == ref["output_shape"]
    r["output_finite"] = bool(torch.isfinite(out).all())
    try:
        r["flops"] = count_flops(pruned, inputs)
        r["flops_ratio"] = r["flops"] / ref["flops"]
    except Exception as e:
        r["flops_error"] = error_text(e)
    r["latency_b1"] = batch1_speedup(original, pruned, inputs, pairs=pairs)
    return r


def batch1_speedup(original: nn.Module, pruned: nn.Module, inputs, *, pairs: int) -> dict:
    """compare_latency(original, pruned) at batch 1, eager PyTorch: the
    median of the per-pair ratios original/pruned is the speedup."""
    from torchslim.analysis.latency import compare_latency

    try:
        c = compare_latency(original, pruned, first_row(inputs), threads=THREADS, repeats=pairs)
    except Exception as e:
        return {"error": error_text(e)}
    return {"speedup": c["ratio_median"], "ratio_p10": c["ratio_p10"], "ratio_p90": c["ratio_p90"],
            "original_ms": c["a_median_ms"], "pruned_ms": c["b_median_ms"], "pairs": c["repeats"],
            "threads": c["threads"], "batch_size": c["batch_size"]}


def save_reload(pruned: nn.Module, inputs) -> dict:
    """torchslim.save + torchslim.load in a temporary folder; the max abs
    difference of the primary outputs before and after."""
    import torchslim

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "pruned.safetensors")
        try:
            torchslim.save(pruned, path)
            reloaded = torchslim.load(path)
            diff = (primary_output(run(reloaded, inputs)) - primary_output(run(pruned, inputs))).abs().max()
            return {"reload_max_abs_diff": float(diff)}
        except Exception as e:
            return {"save_load_error": error_text(e).replace(path, "<file>")}


# ------------------------------------------------------------------ the two tools
def prune_torchslim(model: nn.Module, inputs) -> nn.Module:
    """The plain call a new user makes."""
    import torchslim

    return torchslim.prune.structured(model, inputs, ratio=RATIO, target="macs")


def tp_output_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layer Torch-Pruning's README/examples keep: the LM head, else the
    final classifier Linear, else the BERT pooler (prune_hf_bert.py)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None and isinstance(getattr(model, "classifier", None), nn.Module):
        linears = [m for m in model.classifier.modules() if isinstance(m, nn.Linear)]
        head = linears[-1] if linears else None
    if head is None and isinstance(getattr(model, "pooler", None), nn.Module):
        head = model.pooler
    if head is None:
        return {}
    name = next(n for n, m in model.named_modules() if m is head)
    return {name: head}


def tp_inputs(model: nn.Module, inputs):
    """The example inputs in the form of Torch-Pruning's HF examples: for text
    models a dict of keyword arguments (prune_hf_bert.py; named after the
    forward's positional parameters, so it is the same call), for image
    models the pixel tensor, inside the tuple hf_suite gives (Torch-Pruning
    calls ``model(*example_inputs)`` first: a bare batch-2 tensor would be
    unpacked along the batch before its fallback ``model(example_inputs)``)."""
    if isinstance(inputs, dict):
        return dict(inputs)
    if is_text(inputs):
        names = list(inspect.signature(model.forward).parameters)
        return dict(zip(names, inputs))
    return tuple(inputs)


def prune_tp(model: nn.Module, inputs) -> tuple[nn.Module, dict]:
    """Torch-Pruning 1.6.1, plain documented usage, in place on ``model``."""
    import torch_pruning as tp

    ignored = tp_output_layers(model)
    pruner = tp.pruner.MetaPruner(model, tp_inputs(model, inputs), importance=tp.importance.MagnitudeImportance(p=2),
                                  pruning_ratio=RATIO, ignored_layers=list(ignored.values()))
    pruner.step()
    return model, {"ignored_layers": list(ignored)}


def bench_tool(tool: str, original: nn.Module, inputs, ref: dict, *, pairs: int) -> dict:
    """Prune a fresh copy of ``original`` with ``tool`` and measure the result."""
    work = copy.deepcopy(original)
    r: dict = {}
    try:
        with Timer() as t:
            if tool == "torchslim":
                pruned = prune_torchslim(work, inputs)
            else:
                pruned, extra = prune_tp(work, inputs)
                r.update(extra)
    except Exception as e:
        r.update(error=error_text(e), seconds=t.seconds)
        return r
    r["seconds"] = t.seconds
    r.update(check_pruned(original, pruned, inputs, ref, pairs=pairs))
    if tool == "torchslim" and "forward_error" not in r:
        r.update(save_reload(pruned, inputs))
    r["handled"] = handled(tool, r)
    return r


def handled(tool: str, r: dict) -> bool:
    """Ran, output shape unchanged, finite; torchslim also at the FLOPs goal
    and saved + reloaded with the same outputs."""
    ok = "error" not in r and r.get("output_shape_unchanged") is True and r.get("output_finite") is True
    if tool == "torchslim":
        ok = (ok and r.get("flops_ratio", math.inf) <= FLOPS_GOAL
              and r.get("reload_max_abs_diff", math.inf) <= RELOAD_TOL)
    return ok


def bench_model(name: str, *, pairs: int = PAIRS, tools=TOOLS) -> dict:
    """Both tools on one suite model; a failure is recorded, never raised."""
    from torchslim.testing import hf_suite

    res: dict = {"family": hf_suite.family(name)}
    stage = "build"
    try:
        original, inputs = hf_suite.build(name)
        stage = "forward"
        out = primary_output(run(original, inputs))
        res["reference"] = {"output_shape": list(out.shape), "flops": count_flops(original, inputs),
                            "params": sum(p.numel() for p in original.parameters())}
    except Exception as e:  # the suite model itself fails (build, or its own example inputs): nothing to prune
        res["suite_error"] = f"{stage}: {error_text(e)}"
        return res
    for tool in tools:
        res[tool] = bench_tool(tool, original, inputs, res["reference"], pairs=pairs)
    return res


# ------------------------------------------------------------------ report
def error_of(r: dict | None) -> str | None:
    """The first error a tool's record holds (pruning, forward, save/load)."""
    for key in ("error", "forward_error", "save_load_error", "flops_error"):
        if r and key in r:
            return r[key]
    lat = (r or {}).get("latency_b1", {})
    return f"latency: {lat['error']}" if "error" in lat else None


def status(r: dict | None) -> str:
    """One word or two for the table: ok, or why not."""
    if r is None:
        return "-"
    if r.get("handled"):
        return "ok"
    if "error" in r:
        return "prune failed"
    if "forward_error" in r:
        return "crashes"
    if r.get("output_shape_unchanged") is False:
        return "shape changed"
    if r.get("output_finite") is False:
        return "not finite"
    if r.get("flops_ratio", math.inf) > FLOPS_GOAL:
        return "FLOPs > goal"
    if "save_load_error" in r:
        return "save/load failed"
    if r.get("reload_max_abs_diff", math.inf) > RELOAD_TOL:
        return "reload differs"
    return "no"


def cells(r: dict | None) -> list[str]:
    """FLOPs left, batch-1 speedup, status."""
    flops = f"{r['flops_ratio']:.1%}" if r and "flops_ratio" in r else "-"
    lat = (r or {}).get("latency_b1", {})
    speed = f"{lat['speedup']:.2f}x" if "speedup" in lat else "-"
    return [flops, speed, status(r)]


def summary(models: dict) -> dict:
    """Per tool: models handled, models timed, models slower than the original at batch 1."""
    out = {}
    for tool in TOOLS:
        rows = [m.get(tool) for m in models.values()]
        timed = [r["latency_b1"]["speedup"] for r in rows if r and "speedup" in r.get("latency_b1", {})]
        out[tool] = {"handled": sum(bool(r and r.get("handled")) for r in rows), "models": len(models),
                     "timed_b1": len(timed), "slower_than_original_b1": sum(s < 1.0 for s in timed)}
    return out


def print_report(res: dict) -> None:
    """The side-by-side table, the summary lines, then each error in full (first line)."""
    rows, errors = [], []
    for name, m in res["models"].items():
        if "suite_error" in m:
            rows.append([name, m["family"], "-", "-", "suite failed", "-", "-", "suite failed"])
            errors.append(f"{name} (hf_suite {m['suite_error']})")
            continue
        rows.append([name, m["family"], *cells(m.get("torchslim")), *cells(m.get("torch-pruning"))])
        errors += [f"{name} {tool}: {error_of(m.get(tool))}" for tool in TOOLS if error_of(m.get(tool))]
    print_table(f"Hugging Face suite, structured pruning at ratio {RATIO} (torchslim: target='macs', FLOPs goal "
                f"<= {FLOPS_GOAL:.1%}); FLOPs left (FlopCounterMode); speedup over the original = median of "
                f"{res['pairs']} alternating pairs, batch 1, eager PyTorch, {res['threads']} thread(s)",
                ["model", "family", "torchslim FLOPs", "speedup", "ok", "TP FLOPs", "speedup", "ok"], rows)
    print()
    for tool, s in res["summary"].items():
        print(f"{tool}: handled {s['handled']}/{s['models']}; slower than the original at batch 1: "
              f"{s['slower_than_original_b1']} of {s['timed_b1']} timed")
    if errors:
        print("\nerrors:\n  " + "\n  ".join(e[:220] for e in errors), flush=True)


# ------------------------------------------------------------------ entry point
def _versions() -> dict:
    out = {}
    for pkg in ("torch", "transformers", "torch-pruning"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


@contextlib.contextmanager
def _quiet():
    """transformers' warnings and loggers off for the run (restored after)."""
    import transformers

    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers.logging.set_verbosity(level)


def chosen_models() -> list[str]:
    from torchslim.testing import hf_suite

    only = [n.strip() for n in os.environ.get("TORCHSLIM_BENCH_ONLY", "").split(",") if n.strip()]
    unknown = [n for n in only if n not in hf_suite.SUITE]
    if unknown:
        raise SystemExit(f"TORCHSLIM_BENCH_ONLY: unknown model(s) {unknown}; known: {list(hf_suite.SUITE)}")
    return only or list(hf_suite.SUITE)


def main() -> None:
    from torchslim.testing import hf_suite

    names = chosen_models()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    res = {"threads": THREADS, "pairs": PAIRS, "ratio": RATIO, "flops_goal": FLOPS_GOAL, "reload_tol": RELOAD_TOL,
           "batch_latency": 1, "runtime": "eager PyTorch", "versions": _versions(),
           "torchslim_call": f"torchslim.prune.structured(model, example_inputs, ratio={RATIO}, target='macs')",
           "tp_call": f"tp.pruner.MetaPruner(model, example_inputs, importance=tp.importance.MagnitudeImportance(p=2), "
                      f"pruning_ratio={RATIO}, ignored_layers=[output layer]); pruner.step()",
           "load_average": os.getloadavg(), "models": {}}
    try:
        with _quiet():
            for name in names:
                print(f"[hf_suite] {name} ...", flush=True)
                with Timer() as t:
                    res["models"][name] = m = bench_model(name)
                m["seconds"] = t.seconds
                line = m.get("suite_error") or " | ".join(f"{tool} {' '.join(cells(m.get(tool)))}" for tool in TOOLS)
                print(f"[hf_suite] {name}: {line} ({t.seconds:.0f} s)", flush=True)
    finally:
        torch.set_num_threads(threads_before)
    res["load_average_end"] = os.getloadavg()
    res["summary"] = summary(res["models"])
    full = len(names) == len(hf_suite.SUITE)
    path = write_result("hf_suite" if full else "hf_suite-subset", res)
    print_report(res)
    print(f"[hf_suite] results: {path}", flush=True)


if __name__ == "__main__":
    main()
