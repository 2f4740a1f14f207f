"""Knowledge distillation benchmark (three parts; run one with
``python -m benchmarks.bench_distill hinton|cnn|minilm``, all with run_all).

1. hinton: Hinton et al.'s MNIST experiment at our scale: a large MLP teacher
   (1200-1200, dropout) and a small MLP student trained on labels alone vs
   with soft targets (same student, same epochs), several seeds, test errors.
2. cnn: a narrow resnet8 student of a wide resnet8 teacher on an MNIST subset:
   labels only, soft targets, soft targets + attention transfer, soft targets
   + FitNets hint (learned 1x1 adapter).
3. minilm: a 3-layer student of the 6-layer pretrained all-MiniLM-L6-v2,
   initialised from every other teacher layer, distilled on an offline
   sentence corpus (stdlib docstrings; torchslim.zoo.text): fidelity on
   held-out sentences (mean cosine to the teacher's embeddings, nearest-
   neighbour agreement) and measured CPU speedup (alternating pairs).
"""
from __future__ import annotations

import statistics
import sys

import torch

from benchmarks.common import Timer, write_result
from torchslim.analysis.evaluate import evaluate
from torchslim.distill import (AttentionTransferConfig, DistillConfig, HintConfig, LayerMapConfig, distill,
                               init_from_teacher_layers)
from torchslim.train import TrainConfig, fit
from torchslim.zoo import ArrayDataset, build_model, load_dataset

THREADS = 1


def _errors(model, test) -> int:
    return int(round(evaluate(model, test)["error"] * len(test)))


def _spread(xs):
    return {"mean": statistics.mean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "values": xs}


# ---------------------------------------------------------------- 1. Hinton MNIST
def hinton(seeds=(0, 1, 2), student_hidden=(30,), epochs=15, teacher_name="mlp") -> dict:
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    torch.manual_seed(0)
    if teacher_name == "mlp":
        teacher = build_model("mlp", dataset="mnist", hidden=[1200, 1200], dropout=0.3)
        with Timer() as t:
            fit(teacher, train, TrainConfig(epochs=10, lr=1e-3, batch_size=128, seed=0), progress=False)
    else:  # a cached benchmark baseline as the teacher (no teacher training here)
        from benchmarks.common import baseline

        with Timer() as t:
            teacher, _ = baseline(teacher_name)
    t_err = _errors(teacher, test)
    print(f"[hinton] teacher {teacher_name}: {t_err} test errors ({t.seconds:.0f} s)", flush=True)
    res = {"teacher": teacher_name, "teacher_errors": t_err, "teacher_train_seconds": t.seconds, "student_hidden": list(student_hidden),
           "epochs": epochs}
    train_cfg = lambda seed: TrainConfig(epochs=epochs, lr=1e-3, batch_size=128, seed=seed)  # noqa: E731
    hard, soft = [], []
    cache_teacher = None
    for seed in seeds:
        torch.manual_seed(seed)
        s = build_model("mlp", dataset="mnist", hidden=list(student_hidden))
        fit(s, train, train_cfg(seed), progress=False)
        hard.append(_errors(s, test))
        torch.manual_seed(seed)
        s = build_model("mlp", dataset="mnist", hidden=list(student_hidden))
        cfg = DistillConfig(temperature=4.0, alpha=0.9, cache_teacher=True, train=train_cfg(seed))
        r = distill(s, teacher, train, cfg, progress=False)
        soft.append(_errors(s, test))
        cache_teacher = r.teacher_stats
        print(f"[hinton] seed {seed}: student {list(student_hidden)} labels only {hard[-1]} errors, "
              f"soft targets (T=4, alpha=0.9) {soft[-1]} errors", flush=True)
    res.update(labels_only_errors=_spread(hard), soft_target_errors=_spread(soft), teacher_cache=cache_teacher)
    print(f"[hinton] labels only {res['labels_only_errors']['mean']:.1f} +- {res['labels_only_errors']['std']:.1f}"
          f" errors vs soft targets {res['soft_target_errors']['mean']:.1f} +- {res['soft_target_errors']['std']:.1f}"
          f" (of {len(test)}; {len(seeds)} seeds)", flush=True)
    return res


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
    e = _embed(student, ids)
    cos = torch.nn.functional.cosine_similarity(e, teacher_emb, dim=1)
    def nn_idx(x):
        sim = x @ x.T
        sim.fill_diagonal_(-2)
        return sim.argmax(1)
    agree = float((nn_idx(e) == nn_idx(teacher_emb)).float().mean())
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()), "nn_agreement": agree}


def minilm(n_train=1500, n_eval=1000, max_len=32, epochs=2, lr=1e-4) -> dict:
    from torchslim.zoo.text import sentences

    train_s, eval_s = sentences(n_train, split="calib"), sentences(n_eval, split="eval")
    train_ids, eval_ids = _tokenize(train_s, max_len), _tokenize(eval_s, max_len)
    teacher = build_model("minilm").eval()
    t_emb = _embed(teacher, eval_ids)
    out = {"train_sentences": len(train_s), "eval_sentences": len(eval_s), "max_len": max_len, "epochs": epochs, "lr": lr,
           "corpus": "torchslim.zoo.text (stdlib docstrings), calib split for training, eval split held out"}
    first3 = build_model("minilm", num_layers=3)
    out["first_3_layers_no_training"] = _fidelity(first3, t_emb, eval_ids)
    student = build_model("minilm", num_layers=3)
    init_from_teacher_layers(student, teacher, [0, 2, 4])
    out["every_other_layer_init_no_training"] = _fidelity(student, t_emb, eval_ids)
    print(f"[minilm] before distillation: first-3 {out['first_3_layers_no_training']}, "
          f"every-other init {out['every_other_layer_init_no_training']}", flush=True)
    cfg = DistillConfig(alpha=1.0, output_loss="cosine", inputs="token_ids",
                        layers=LayerMapConfig(student_layers=(0, 1, 2), teacher_layers=(1, 3, 5),
                                              attention_weight=1.0, hidden_weight=1.0),
                        train=TrainConfig(epochs=epochs, lr=lr, batch_size=32, optimizer="adamw",
                                          scheduler="cosine", warmup_steps=10))
    data = ArrayDataset(train_ids, torch.zeros(len(train_ids), dtype=torch.long), "sentences", "calib")
    with Timer() as t:
        distill(student, teacher, data, cfg, progress=False)
    out["distilled"] = _fidelity(student, t_emb, eval_ids)
    out["distill_seconds"] = t.seconds
    print(f"[minilm] distilled 3-layer student: {out['distilled']} ({t.seconds:.0f} s)", flush=True)
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
         # a longer run: every training sentence, 4 epochs, higher learning rate (not part of the default run)
         "minilm_long": lambda: minilm(n_train=None, epochs=4, lr=3e-4),
         # a wider student (which overfits labels more) taught by the cached LeNet-5 baseline
         "cnn_quick": lambda: cnn(seeds=(0,), n_train=5000, epochs=3, teacher_n=10000, teacher_epochs=1),
         "hinton_wide": lambda: hinton(student_hidden=(100,), epochs=10, teacher_name="lenet5")}
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
