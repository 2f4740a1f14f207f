"""torchslim prune MODEL --dataset D --sparsity 0.9 --out PATH.safetensors

Unstructured (one-shot, iterative or AGP) or N:M pruning with optional
fine-tuning; settings chosen on a holdout split of train, accuracy reported
on the test split; the artifact stores pruned tensors sparsely."""
from __future__ import annotations

from pathlib import Path


def add_parser(sub):
    from .common import NONNEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, bounded

    p = sub.add_parser("prune", help="unstructured or N:M pruning (+ fine-tuning), saved as a sparse artifact")
    p.add_argument("model", help="artifact path (or zoo name)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--sparsity", type=bounded(float, 0, 1, hi_open=True), default=0.5,
                   help="fraction of in-scope weights to zero")
    p.add_argument("--criterion", default="l1",
                   choices=["l1", "l2", "max", "random", "gradient", "taylor", "obd_fisher", "obd_hutchinson"])
    p.add_argument("--ranking", default="global", choices=["global", "layer"])
    p.add_argument("--scope-exclude", nargs="*", default=[], metavar="LAYER", help="layer names to leave dense")
    p.add_argument("--scope-exclude-pattern", nargs="*", default=[], metavar="REGEX")
    p.add_argument("--nm", default=None, metavar="N:M", help="N:M semi-structured sparsity (e.g. 2:4) instead of --sparsity")
    p.add_argument("--allocate", default="none", choices=["none", "params", "macs", "latency"],
                   help="per-layer sparsities from a sensitivity scan meeting --sparsity of this budget")
    p.add_argument("--cycles", type=POSITIVE_INT, default=1, help="iterative prune/fine-tune rounds (1 = one-shot)")
    p.add_argument("--agp", action="store_true", help="gradual (AGP) pruning during the fine-tuning run")
    p.add_argument("--finetune-epochs", type=NONNEGATIVE_INT, default=0)
    p.add_argument("--lr", type=POSITIVE_FLOAT, default=1e-3)
    p.add_argument("--batch-size", type=POSITIVE_INT, default=128)
    p.add_argument("--calib", type=POSITIVE_INT, default=5000, help="holdout examples taken from train for calibration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fp16", action="store_true", help="store float tensors as fp16 in the artifact")
    p.add_argument("--out", required=True, help="output artifact (.safetensors); checkpoints go to OUT.work/")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def _nm(text: str) -> tuple[int, int]:
    from ..core.errors import ConfigError

    try:
        n, m = (int(v) for v in text.split(":"))
    except ValueError:
        raise ConfigError(f"--nm {text!r}: expected N:M, for example 2:4") from None
    if not 0 < n <= m:
        raise ConfigError(f"--nm {text}: needs 0 < N <= M (N of every M weights kept), for example 2:4")
    return n, m


def build_config(args, n_train: int = 0):
    from ..core.scope import Scope
    from ..train import TrainConfig
    from ..prune.configs import AGPConfig, NMConfig, UnstructuredConfig

    scope = Scope(exclude_names=tuple(args.scope_exclude), exclude_patterns=tuple(args.scope_exclude_pattern))
    ft = None
    if args.finetune_epochs > 0:
        ft = TrainConfig(epochs=args.finetune_epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed)
    if args.nm:
        n, m = _nm(args.nm)
        return NMConfig(n=n, m=m, criterion=args.criterion, scope=scope, finetune=ft)
    if args.agp:
        from ..core.errors import ConfigError

        if ft is None:
            raise ConfigError("--agp prunes during training: give --finetune-epochs N")
        return AGPConfig(sparsity=args.sparsity, criterion=args.criterion, ranking=args.ranking, scope=scope,
                         finetune=ft, frequency=max(1, (-(-n_train // args.batch_size) * args.finetune_epochs) // 40))
    return UnstructuredConfig(sparsity=args.sparsity, criterion=args.criterion, ranking=args.ranking, scope=scope,
                              cycles=args.cycles, finetune=ft, allocate=args.allocate)


def run(args) -> int:
    import torch

    from ..analysis.evaluate import evaluate
    from ..artifact import save
    from ..core import Context, apply
    from ..prune.masks import sparsity_report
    from ..prune.unstructured import select_layers
    from ..zoo import example_inputs, load_dataset, split_train
    from .common import check_fits, check_out, load_model, print_json, print_table

    check_out(args.out)
    build_config(args)  # every setting checked before any work (AGP's frequency is set below)
    torch.manual_seed(args.seed)
    model = load_model(args.model, dataset=args.dataset)
    train_all, test = load_dataset(args.dataset, "train"), load_dataset(args.dataset, "test")
    check_fits(model, test, dataset=args.dataset)
    train, calib = split_train(train_all, min(args.calib, len(train_all) // 5), seed=args.seed)
    cfg = build_config(args, len(train))  # AGP updates its masks every 1/40 of the run
    before = evaluate(model, test)["accuracy"]
    dense_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    out = Path(args.out)
    ctx = Context(train_data=train, calib_data=calib, dataset=args.dataset,
                  example_inputs=example_inputs(model, args.dataset), out_dir=out.parent,
                  stage_out=out.with_name(out.name + ".work"), progress=not args.no_progress, seed=args.seed)
    model = apply(model, cfg, ctx)
    rep = sparsity_report(model, select_layers(model, cfg.scope))
    every = sparsity_report(model)  # all Linear/Conv layers, in scope or not
    after = evaluate(model, test)["accuracy"]
    path = save(model, out, fp16=args.fp16, metadata={"dataset": args.dataset, "prune": {cfg.name: cfg.to_dict()}})
    size = path.stat().st_size
    summary = {
        "model": args.model, "dataset": args.dataset, "config": {"name": cfg.name, **cfg.to_dict()},
        "sparsity": rep["sparsity"], "layers": {k: v["sparsity"] for k, v in every["layers"].items()},
        "accuracy_before": before, "accuracy": after, "artifact": str(path), "size_bytes": size,
        "dense_fp32_bytes": dense_bytes, "compression_ratio": dense_bytes / size,
    }
    if args.json:
        print_json(summary)
        return 0
    print_table(f"{cfg.name} of {args.model}", ["layer", "weights", "sparsity"],
                [[k, v["params"], v["sparsity"]] for k, v in every["layers"].items()])
    print_table("result", ["metric", "value"], [
        ["weight sparsity (in scope)", rep["sparsity"]], ["test accuracy before", before], ["test accuracy after", after],
        ["artifact", str(path)], ["artifact bytes", size], ["dense fp32 tensor bytes", dense_bytes],
        ["compression (dense bytes / artifact bytes)", dense_bytes / size],
    ])
    return 0
