"""torchslim train MODEL --dataset D --epochs N --out DIR"""
from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub):
    p = sub.add_parser("train", help="train a zoo model (checkpointed, resumable, DDP under torchrun)")
    p.add_argument("model", help="zoo model name or an artifact to continue training")
    p.add_argument("--dataset", required=True)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", default="adam", choices=["sgd", "adam", "adamw"])
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--scheduler", default="cosine", choices=["none", "cosine", "step", "onecycle"])
    p.add_argument("--shift", type=int, default=0,
                   help="random translation augmentation: move each image by up to this many pixels (0 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps-per-epoch", type=int, default=None)
    p.add_argument("--checkpoint-every-steps", type=int, default=None)
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
    from .common import load_model, print_json, print_table

    torch.manual_seed(args.seed)
    model = load_model(args.model, dataset=args.dataset)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                      weight_decay=args.weight_decay, scheduler=args.scheduler, seed=args.seed, shift=args.shift,
                      max_steps_per_epoch=args.max_steps_per_epoch,
                      checkpoint_every_steps=args.checkpoint_every_steps)
    out = Path(args.out)
    train = load_dataset(args.dataset, "train")
    test = load_dataset(args.dataset, "test")
    from ..zoo.user_data import check_data_fits, is_user_data

    if is_user_data(args.dataset):
        check_data_fits(model, train, where=args.dataset)
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
