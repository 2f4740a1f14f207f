"""Knowledge distillation benchmark (three parts; run one with
``python -m benchmarks.bench_distill hinton|cnn|minilm``, all with run_all).

1. hinton: Hinton et al.'s MNIST experiment at our scale: a 1200-1200 MLP
   teacher (dropout, +-2 px jitter) and an unregularised 300-300 MLP student
   trained on labels alone vs with soft targets (same student, epochs and
   schedule), temperature/alpha chosen on a holdout of the training split,
   5 seeds, test errors (``hinton800``: the same with Hinton's 800-800).
2. cnn: a narrow resnet8 student of a wide resnet8 teacher on an MNIST subset:
   labels only, soft targets, soft targets + attention transfer, soft targets
   + FitNets hint (learned 1x1 adapter).
3. minilm: a 3-layer student of the 6-layer pretrained all-MiniLM-L6-v2,
   initialised from three teacher layers (chosen on a selection split held
   out of the calib data), distilled on the final sentence embedding over a
   ~19k-sentence offline corpus (stdlib, reference-manual and torch
   docstrings; torchslim.zoo.text source="large"): fidelity on held-out
   sentences (mean cosine to the teacher's embeddings, nearest-neighbour
   agreement) and measured CPU speedup (alternating pairs).
"""
from __future__ import annotations

import statistics
import sys

import torch

from benchmarks.common import Timer, write_result
from torchslim.analysis.evaluate import evaluate
from torchslim.distill import (AttentionTransferConfig, DistillConfig, HintConfig, distill,
                               init_from_teacher_layers)
from torchslim.train import TrainConfig, fit
from torchslim.zoo import ArrayDataset, build_model, load_dataset

THREADS = 1


def _errors(model, test) -> int:
    return int(round(evaluate(model, test)["error"] * len(test)))


def _spread(xs):
    return {"mean": statistics.mean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "values": xs}


# ---------------------------------------------------------------- 1. Hinton MNIST
# Hinton et al. (2015), section 3, at our scale. The teacher is a 1200-1200
# ReLU MLP with dropout 0.5 trained with +-2 px jitter (TrainConfig.shift);
# the student an unregularised 300-300 MLP (Hinton's was 800-800; 300-300
# trains ~4x faster, which the shared 2-core machine forced) trained on the un-jittered
# training images, on labels alone or with the teacher's soft targets (same
# epochs, optimiser and schedule). The training split is divided once into
# SELECT_TRAIN (50k) + HOLDOUT (10k, torchslim.zoo.data.split_train): teacher
# and students train on the 50k; temperature and alpha are chosen by student
# errors on the holdout; the test split only scores the final seeds.
HOLDOUT = 10000
TEACHER = dict(hidden=[1200, 1200], dropout=0.5)
TEACHER_TRAIN = dict(epochs=30, batch_size=128, lr=1e-3, optimizer="adam", scheduler="cosine", shift=2, seed=0)
STUDENT = dict(hidden=[300, 300])
STUDENT_TRAIN = dict(epochs=20, batch_size=128, lr=1e-3, optimizer="adam", scheduler="cosine")
GRID = tuple((t, a) for t in (4.0, 10.0, 20.0) for a in (0.5, 0.9))


def _hinton_splits():
    from torchslim.zoo.data import split_train

    return split_train(load_dataset("mnist", "train"), HOLDOUT, seed=0)


def hinton_teacher():
    """The jitter-trained teacher, trained once on the 50k split and cached
    (file-locked) under the baselines cache dir. Returns (model, info)."""
    import fcntl
    import json

    from benchmarks.common import baseline_path
    from torchslim.artifact import atomic_write_bytes, load, save
    from torchslim.zoo.data import cache_dir

    path = baseline_path("hinton-teacher-1200x2-do0.5-shift2-50k", "mnist", 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    info_path = path.with_suffix(".json")
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            train, holdout = _hinton_splits()
            torch.manual_seed(0)
            model = build_model("mlp", dataset="mnist", **TEACHER)
            cfg = TrainConfig(**TEACHER_TRAIN)
            res = fit(model, train, cfg, out_dir=cache_dir() / "baselines" / "run-hinton-teacher", progress=False)
            save(model, path, metadata={"dataset": "mnist", "train": cfg.to_dict(), "split": f"train minus {HOLDOUT} holdout"})
            atomic_write_bytes(info_path, json.dumps({
                "train_seconds": sum(h["seconds"] for h in res.history), "train": cfg.to_dict(),
                "holdout_errors": _errors(model, holdout)}).encode())
    return load(path).eval(), json.loads(info_path.read_text())


def _student_job(arm: str, seed: int, split: str, temperature: float = 0.0, alpha: float = 0.0,
                 hidden=tuple(STUDENT["hidden"])) -> dict:
    """One student run (in a worker process, one thread): ``arm`` "labels" or
    "soft"; scored on the "holdout" or the "test" split. Finished runs are kept
    as JSON in the cache dir (keyed by every setting), so an interrupted
    benchmark resumes without redoing them."""
    import hashlib
    import json

    from torchslim.artifact import atomic_write_bytes
    from torchslim.zoo.data import cache_dir

    student = dict(hidden=list(hidden))
    key = json.dumps([arm, seed, split, temperature, alpha, student, STUDENT_TRAIN, TEACHER, TEACHER_TRAIN, HOLDOUT])
    path = cache_dir() / "hinton-runs" / (hashlib.sha256(key.encode()).hexdigest()[:16] + ".json")
    if path.exists():
        return {**json.loads(path.read_text()), "cached": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    res = _student_run(arm, seed, split, temperature, alpha, student)
    atomic_write_bytes(path, json.dumps(res).encode())
    return res


def _student_run(arm: str, seed: int, split: str, temperature: float, alpha: float, student: dict) -> dict:
    torch.set_num_threads(THREADS)
    train, holdout = _hinton_splits()
    score = holdout if split == "holdout" else load_dataset("mnist", "test")
    cfg = TrainConfig(seed=seed, **STUDENT_TRAIN)
    torch.manual_seed(seed)
    s = build_model("mlp", dataset="mnist", **student)  # the same initial weights in both arms
    with Timer() as t:
        if arm == "labels":
            r = fit(s, train, cfg, progress=False)
        else:
            teacher, _ = hinton_teacher()
            dcfg = DistillConfig(temperature=temperature, alpha=alpha, output_loss="kl", cache_teacher=True, train=cfg)
            r = distill(s, teacher, train, dcfg, progress=False)
    return {"arm": arm, "seed": seed, "split": split, "temperature": temperature, "alpha": alpha,
            "errors": _errors(s, score), "train_errors": _errors(s, train), "final_train_loss": r.history[-1]["train_loss"],
            "seconds": t.seconds}


def hinton(seeds=(0, 1, 2, 3, 4), grid=GRID, select_seed=100, workers=2, student_hidden=tuple(STUDENT["hidden"])) -> dict:
    """Teacher (cached), then in ``workers`` processes of one thread each: the
    labels-only arm on the test split (needs no teacher, runs while the
    teacher trains), the (temperature, alpha) grid on the holdout, and the
    soft-target arm with the chosen pair on the test split."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    test = load_dataset("mnist", "test")
    out = {"setup": {
        "split": f"MNIST train split into {60000 - HOLDOUT} (teacher + students) and {HOLDOUT} holdout "
                 "(split_train seed 0); test split used only for the final seeds",
        "teacher": {"model": "mlp", **TEACHER, "train": TEACHER_TRAIN},
        "student": {"model": "mlp", "hidden": list(student_hidden), "regularisation": "none (no dropout, no jitter, no weight decay)",
                    "train": STUDENT_TRAIN},
        "soft_loss": "alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y) "
                     "(torchslim.distill soft_target_loss); teacher logits cached per sample (computed once per run)",
        "workers": workers, "threads_per_worker": THREADS}}
    def submit(*args):  # log every run as it finishes (a long benchmark)
        f = pool.submit(_student_job, *args, hidden=tuple(student_hidden))
        f.add_done_callback(lambda f: f.exception() or print(f"[hinton] run {f.result()}", flush=True))
        return f

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        labels = [submit("labels", s, "test", 0.0, 0.0) for s in seeds]
        with Timer() as t:
            teacher, info = hinton_teacher()
        _, holdout = _hinton_splits()
        out["teacher"] = {"test_errors": _errors(teacher, test), "holdout_errors": _errors(teacher, holdout),
                          "train_seconds": info["train_seconds"], "seconds_here": t.seconds}
        print(f"[hinton] teacher 1200-1200 dropout 0.5 jitter 2px: {out['teacher']['test_errors']} test errors, "
              f"{out['teacher']['holdout_errors']} holdout errors (trained in {info['train_seconds']:.0f} s)", flush=True)
        sel = [submit("labels", select_seed, "holdout", 0.0, 0.0)]
        sel += [submit("soft", select_seed, "holdout", t_, a) for t_, a in grid]
        sel = [f.result() for f in sel]
        for r in sel:
            print(f"[hinton] holdout, seed {select_seed}: {r['arm']} T={r['temperature']} alpha={r['alpha']}: "
                  f"{r['errors']} errors of {HOLDOUT}", flush=True)
        best = min((r for r in sel if r["arm"] == "soft"), key=lambda r: (r["errors"], -r["temperature"]))
        out["selection"] = {"rule": f"fewest student errors on the {HOLDOUT}-image holdout, one seed ({select_seed}); "
                                    "ties -> higher temperature",
                            "runs": sel, "chosen": {"temperature": best["temperature"], "alpha": best["alpha"]}}
        print(f"[hinton] chosen on the holdout: T={best['temperature']} alpha={best['alpha']}", flush=True)
        soft = [submit("soft", s, "test", best["temperature"], best["alpha"]) for s in seeds]
        labels = [f.result() for f in labels]
        soft = [f.result() for f in soft]
    hard_e, soft_e = [r["errors"] for r in labels], [r["errors"] for r in soft]
    out["labels_only_errors"] = _spread(hard_e)
    out["soft_target_errors"] = _spread(soft_e)
    out["paired_difference_labels_minus_soft"] = _spread([h - s for h, s in zip(hard_e, soft_e)])
    out["runs"] = labels + soft
    for h, s in zip(labels, soft):
        print(f"[hinton] seed {h['seed']}: labels only {h['errors']} test errors (train errors {h['train_errors']}), "
              f"soft targets {s['errors']} (train errors {s['train_errors']})", flush=True)
    print(f"[hinton] student {'-'.join(map(str, student_hidden))}, {len(seeds)} seeds: labels only {out['labels_only_errors']['mean']:.1f} +- "
          f"{out['labels_only_errors']['std']:.1f} test errors vs soft targets (T={best['temperature']}, "
          f"alpha={best['alpha']}) {out['soft_target_errors']['mean']:.1f} +- {out['soft_target_errors']['std']:.1f} "
          f"(of {len(test)}); teacher {out['teacher']['test_errors']}", flush=True)
    return out


# ---------------------------------------------------------------- 2. CNN hints / attention transfer
def cnn(seeds=(0, 1), n_train=10000, epochs=8, teacher_n=30000, teacher_epochs=2) -> dict:
    full = load_dataset("mnist", "train")
    train, test = full.take(n_train), load_dataset("mnist", "test")
    torch.manual_seed(0)
    teacher = build_model("resnet8", dataset="mnist", width=16)
    with Timer() as t:
        fit(teacher, full.take(teacher_n), TrainConfig(epochs=teacher_epochs, lr=2e-3, batch_size=128), progress=False)
    t_err = _errors(teacher, test)
    print(f"[cnn] teacher resnet8 width 16: {t_err} test errors ({t.seconds:.0f} s)", flush=True)
    tc = lambda seed: TrainConfig(epochs=epochs, lr=2e-3, batch_size=128, seed=seed)  # noqa: E731
    variants = {
        "labels only": None,
        "soft targets": dict(),
        "soft + attention transfer": dict(attention=tuple(AttentionTransferConfig(student=n, teacher=n)
                                                          for n in ("layer1", "layer2", "layer3"))),
        "soft + FitNets hint (layer2, 1x1 adapter)": dict(hints=(HintConfig(student="layer2", teacher="layer2"),)),
    }
    out = {"teacher_errors": t_err, "n_train": n_train, "epochs": epochs, "student": "resnet8 width 4"}
    for name, extra in variants.items():
        errs = []
        for seed in seeds:
            torch.manual_seed(seed)
            s = build_model("resnet8", dataset="mnist", width=4)
            if extra is None:
                fit(s, train, tc(seed), progress=False)
            else:
                distill(s, teacher, train, DistillConfig(temperature=4.0, alpha=0.9, train=tc(seed), **extra),
                        progress=False)
            errs.append(_errors(s, test))
        out[name] = _spread(errs)
        print(f"[cnn] {name}: {out[name]['mean']:.1f} +- {out[name]['std']:.1f} test errors {errs}", flush=True)
    return out


# ---------------------------------------------------------------- 3. MiniLM 6 -> 3 layers
def _tokenize(sentences, max_len):
    from torchslim.zoo.minilm import tokenizer

    tok = tokenizer()
    enc = tok(sentences, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
    return enc["input_ids"]


@torch.no_grad()
def _embed(model, ids, batch=64):
    model.eval()
    return torch.cat([model(ids[i:i + batch], (ids[i:i + batch] != 0).long()) for i in range(0, len(ids), batch)])


def _fidelity(student, teacher_emb, ids) -> dict:
    from torchslim.analysis.fidelity import fidelity

    r = fidelity(_embed(student, ids), teacher_emb)
    return {k: r[k] for k in ("mean_cosine", "min_cosine", "nn_agreement")}


# The recipe of sentence-transformers' layer-reduction distillation: the student
# starts from a subset of the teacher's layers and is trained only to match the
# teacher's final (normalised, mean-pooled) sentence embedding (cosine loss,
# teacher embeddings cached per sentence, computed once per run) on a large,
# varied offline corpus (text.sentences(source="large"): stdlib + reference
# manual + torch docstrings, ~20k calib sentences). Splits:
# - selection: SELECT sentences of the default corpus's calib split (every
#   other one), never trained on; the layer init and learning rate are chosen
#   on it with short pilot runs;
# - train: the rest of the large calib split;
# - eval: the default corpus's eval split (the sentences the previous results
#   were measured on), used only to score the final student.
MINILM_INITS = ((0, 2, 4), (1, 3, 5), (0, 2, 5))
MINILM_LRS = (1e-4, 3e-4)


def _minilm_train(teacher, layers, ids, *, epochs, lr, seed=0, max_steps=None):
    torch.manual_seed(seed)
    student = build_model("minilm", num_layers=3)
    init_from_teacher_layers(student, teacher, layers)
    cfg = DistillConfig(alpha=1.0, output_loss="cosine", inputs="token_ids", cache_teacher=True,
                        train=TrainConfig(epochs=epochs, lr=lr, batch_size=32, optimizer="adamw", weight_decay=0.01,
                                          scheduler="cosine", warmup_steps=50, seed=seed,
                                          max_steps_per_epoch=max_steps))
    data = ArrayDataset(ids, torch.zeros(len(ids), dtype=torch.long), "sentences", "calib")
    with Timer() as t:
        res = distill(student, teacher, data, cfg, progress=False)
    steps = epochs * min(max_steps or len(ids), -(-len(ids) // 32))
    return student, {"seconds": t.seconds, "steps": steps, "teacher_sentences": res.teacher_stats["teacher_samples"],
                     "final_train_loss": res.history[-1]["train_loss"]}


def minilm(n_select=1000, n_eval=1000, max_len=32, epochs=3, inits=MINILM_INITS, lrs=MINILM_LRS,
           pilot_sentences=3000, pilot_epochs=1, n_train=None) -> dict:
    from torchslim.zoo.text import sentences

    select_s = sentences(split="calib")[::2][:n_select]
    held = set(select_s)
    train_s = [s for s in sentences(split="calib", source="large") if s not in held][:n_train]
    eval_s = sentences(n_eval, split="eval")
    assert not (set(train_s) | held) & set(eval_s)
    train_ids, select_ids, eval_ids = (_tokenize(x, max_len) for x in (train_s, select_s, eval_s))
    teacher = build_model("minilm").eval()
    sel_emb, eval_emb = _embed(teacher, select_ids), _embed(teacher, eval_ids)
    out = {"train_sentences": len(train_s), "select_sentences": len(select_s), "eval_sentences": len(eval_s),
           "max_len": max_len, "epochs": epochs, "batch_size": 32,
           "corpus": "train: torchslim.zoo.text sentences(split='calib', source='large') minus the selection "
                     "sentences; selection: every other sentence of sentences(split='calib') (default stdlib "
                     "source), never trained on; eval: sentences(split='eval') (default source), used only for "
                     "the final scores",
           "loss": "1 - cosine(student embedding, teacher embedding) on the final normalised mean-pooled "
                   "sentence embedding (DistillConfig output_loss='cosine', alpha=1, teacher cached per sentence)"}
    out["selection_no_training"] = {"first_3_layers": _fidelity(build_model("minilm", num_layers=3), sel_emb, select_ids)}
    for layers in inits:
        s = build_model("minilm", num_layers=3)
        init_from_teacher_layers(s, teacher, layers)
        out["selection_no_training"][f"init {list(layers)}"] = _fidelity(s, sel_emb, select_ids)
    print(f"[minilm] selection split, before training: {out['selection_no_training']}", flush=True)
    # pilots: every init at the first lr, then the other lrs at the best init; scored on the selection split
    pilot_ids = train_ids[:pilot_sentences]
    pilots = []

    def pilot(layers, lr):
        s, info = _minilm_train(teacher, layers, pilot_ids, epochs=pilot_epochs, lr=lr)
        r = {"init": list(layers), "lr": lr, **info, "selection": _fidelity(s, sel_emb, select_ids)}
        pilots.append(r)
        print(f"[minilm] pilot init {list(layers)} lr {lr}: selection {r['selection']} ({info['seconds']:.0f} s)",
              flush=True)
        return r

    key = lambda r: (r["selection"]["mean_cosine"], r["selection"]["nn_agreement"])  # noqa: E731
    best = max((pilot(layers, lrs[0]) for layers in inits), key=key)
    best = max([best] + [pilot(tuple(best["init"]), lr) for lr in lrs[1:]], key=key)
    out["selection"] = {"rule": f"highest mean cosine on the {len(select_s)} selection sentences after a pilot of "
                                f"{pilot_epochs} epoch(s) on the first {len(pilot_ids)} training sentences; every "
                                f"init at lr {lrs[0]}, then the other lrs at the best init",
                        "pilots": pilots, "chosen": {"init": best["init"], "lr": best["lr"]}}
    print(f"[minilm] chosen on the selection split: init {best['init']} lr {best['lr']}", flush=True)
    student, info = _minilm_train(teacher, tuple(best["init"]), train_ids, epochs=epochs, lr=best["lr"])
    out["distill_seconds"] = info["seconds"]
    out["distill_steps"] = info["steps"]
    out["final_train_loss"] = info["final_train_loss"]
    out["distilled_selection"] = _fidelity(student, sel_emb, select_ids)
    out["distilled_eval"] = _fidelity(student, eval_emb, eval_ids)
    print(f"[minilm] distilled 3-layer student ({info['seconds']:.0f} s): selection {out['distilled_selection']}, "
          f"eval {out['distilled_eval']}", flush=True)
    from torchslim.analysis.latency import compare_latency

    x = eval_ids[:32]
    args = (x, (x != 0).long())
    c = compare_latency(teacher, student.eval(), args, threads=THREADS, repeats=20)
    out["latency"] = {"batch": 32, "seq_len": max_len, "threads": THREADS, "teacher_median_ms": c["a_median_ms"],
                      "student_median_ms": c["b_median_ms"], "speedup_median_of_pair_ratios": c["ratio_median"]}
    out["params"] = {"teacher": sum(p.numel() for p in teacher.parameters()),
                     "student": sum(p.numel() for p in student.parameters())}
    print(f"[minilm] latency batch 32 x {max_len} tokens, {THREADS} thread: teacher {c['a_median_ms']:.1f} ms, "
          f"student {c['b_median_ms']:.1f} ms, speedup {c['ratio_median']:.2f}x (shared machine)", flush=True)
    return out


PARTS = {"hinton": hinton, "cnn": cnn, "minilm": minilm,
         # a smoke test of the minilm part (minutes): small pilots, 2000 training sentences, 1 epoch
         "minilm_quick": lambda: minilm(n_train=2000, epochs=1, inits=((0, 2, 4), (1, 3, 5)), lrs=(1e-4,),
                                        pilot_sentences=640, n_select=300, n_eval=300),
         "cnn_quick": lambda: cnn(seeds=(0,), n_train=5000, epochs=3, teacher_n=10000, teacher_epochs=1),
         # Hinton's student size, 800-800 (about 4x the 300-300 training cost), with a smaller holdout grid
         "hinton800": lambda: hinton(student_hidden=(800, 800), grid=((4.0, 0.5), (20.0, 0.5), (20.0, 0.9)))}
DEFAULT = ("hinton", "cnn", "minilm")


def main(parts=None) -> None:
    torch.set_num_threads(THREADS)
    results = {"threads": THREADS, "machine": "shared 2-core CPU"}
    for name in parts or DEFAULT:
        with Timer() as t:
            results[name] = PARTS[name]()
        results[name]["seconds"] = t.seconds
        print(f"wrote {write_result('distill' if parts is None else f'distill_{name}', results)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or None)
