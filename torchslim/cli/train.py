"""torchslim train MODEL --dataset D --epochs N --out DIR"""
from __future__ import annotations

import json


def add_parser(sub):
    from .common import NONNEGATIVE_FLOAT, NONNEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT

    p = sub.add_parser("train", help="train a zoo model (checkpointed, resumable, DDP under torchrun)")
    p.add_argument("model", help="zoo model name or an artifact to continue training")
    p.add_argument("--dataset", required=True)
    p.add_argument("--epochs", type=NONNEGATIVE_INT, default=10)
    p.add_argument("--batch-size", type=POSITIVE_INT, default=128)
    p.add_argument("--lr", type=POSITIVE_FLOAT, default=1e-3)
    p.add_argument("--optimizer", default="adam", choices=["sgd", "adam", "adamw"])
    p.add_argument("--weight-decay", type=NONNEGATIVE_FLOAT, default=0.0)
    p.add_argument("--scheduler", default="cosine", choices=["none", "cosine", "step", "onecycle"])
    p.add_argument("--shift", type=NONNEGATIVE_INT, default=0,
                   help="random translation augmentation: move each image by up to this many pixels (0 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps-per-epoch", type=POSITIVE_INT, default=None)
    p.add_argument("--checkpoint-every-steps", type=POSITIVE_INT, default=None)
    p.add_argument("--out", required=True, help="output folder: model.safetensors, checkpoints/, train.json")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args) -> int:
    import torch

    from ..analysis.evaluate import evaluate
    from ..artifact import save
    from ..train import TrainConfig, distributed, fit
    from ..zoo.data import load_dataset
    from .common import check_fits, check_out, load_model, print_json, print_table

    out = check_out(args.out, folder=True)
    torch.manual_seed(args.seed)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                      weight_decay=args.weight_decay, scheduler=args.scheduler, seed=args.seed, shift=args.shift,
                      max_steps_per_epoch=args.max_steps_per_epoch,
                      checkpoint_every_steps=args.checkpoint_every_steps)
    model = load_model(args.model, dataset=args.dataset)
    train = load_dataset(args.dataset, "train")
    test = load_dataset(args.dataset, "test")
    check_fits(model, train, dataset=args.dataset)  # a wrong shape or label range fails now, not mid-epoch
    result = fit(model, train, cfg, out_dir=out, resume=not args.no_resume, progress=not args.no_progress)
    if not distributed.is_main():
        return 0
    metrics = evaluate(model, test)
    path = save(model, out / "model.safetensors", metadata={"dataset": args.dataset, "train": cfg.to_dict()})
    summary = {
        "model": args.model, "dataset": args.dataset, "artifact": str(path),
        "accuracy": metrics["accuracy"], "error": metrics["error"], "epochs": cfg.epochs,
        "train_seconds": result.seconds, "resumed_from": result.resumed_from, "history": result.history,
    }
    from ..artifact.format import atomic_write_bytes

    atomic_write_bytes(out / "train.json", json.dumps(summary, indent=2).encode())
    if args.json:
        print_json(summary)
    else:
        print_table(f"trained {args.model} on {args.dataset}", ["metric", "value"],
                    [["test accuracy", metrics["accuracy"]], ["test error %", 100 * metrics["error"]],
                     ["train seconds", result.seconds], ["artifact", str(path)]])
    return 0
