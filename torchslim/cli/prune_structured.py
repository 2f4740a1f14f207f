"""torchslim prune-structured MODEL --dataset D --ratio 0.5 --target macs --out PATH.safetensors

Structured pruning with physical removal (channels, neurons, attention heads),
optional network-slimming training before and fine-tuning after; data-driven
importance uses a holdout split of train, accuracy is reported on the test
split. The artifact records the pruned shapes, so `torchslim eval OUT` rebuilds it."""
from __future__ import annotations

from pathlib import Path


def add_parser(sub):
    from .common import NONNEGATIVE_FLOAT, NONNEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, bounded

    p = sub.add_parser("prune-structured",
                       help="remove channels / neurons / attention heads physically (smaller, faster model)")
    p.add_argument("model", help="artifact path, zoo name, Hugging Face folder or pkg.module:factory")
    p.add_argument("--dataset", required=True, help="data set name or your own data (a path, see zoo.user_data)")
    p.add_argument("--ratio", type=bounded(float, 0, 1, hi_open=True), default=0.5,
                   help="fraction of the --target to remove")
    p.add_argument("--target", default="macs", choices=["channels", "params", "macs"])
    p.add_argument("--importance", default="l2", choices=["l1", "l2", "taylor", "activation", "apoz", "bn_scale"])
    p.add_argument("--round-to", type=POSITIVE_INT, default=None, help="keep channel counts a multiple of this (e.g. 8)")
    p.add_argument("--scope-exclude", nargs="*", default=[], metavar="LAYER",
                   help="layers whose produced channels stay whole")
    p.add_argument("--scope-exclude-pattern", nargs="*", default=[], metavar="REGEX")
    p.add_argument("--best-effort", action="store_true",
                   help="leave channel groups behind unsupported ops unpruned (with a warning) instead of failing")
    p.add_argument("--slimming-epochs", type=NONNEGATIVE_INT, default=0,
                   help="train first with an L1 penalty on BatchNorm scales (use with --importance bn_scale)")
    p.add_argument("--slimming-strength", type=NONNEGATIVE_FLOAT, default=1e-4)
    p.add_argument("--finetune-epochs", type=NONNEGATIVE_INT, default=0)
    p.add_argument("--max-steps", type=POSITIVE_INT, default=None, help="cap on steps per training epoch")
    p.add_argument("--lr", type=POSITIVE_FLOAT, default=1e-3)
    p.add_argument("--batch-size", type=POSITIVE_INT, default=128)
    p.add_argument("--calib", type=POSITIVE_INT, default=2000, help="holdout examples taken from train for calibration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output artifact (.safetensors); checkpoints go to OUT.work/")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def build_config(args):
    from ..core.scope import Scope
    from ..prune.structured.config import StructuredConfig
    from ..train import TrainConfig

    def train(epochs):
        if epochs <= 0:
            return None
        return TrainConfig(epochs=epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                           max_steps_per_epoch=args.max_steps)

    return StructuredConfig(
        ratio=args.ratio, target=args.target, importance=args.importance, round_to=args.round_to,
        best_effort=args.best_effort,
        scope=Scope(exclude_names=tuple(args.scope_exclude), exclude_patterns=tuple(args.scope_exclude_pattern)),
        slimming=train(args.slimming_epochs), slimming_strength=args.slimming_strength,
        finetune=train(args.finetune_epochs))


def run(args) -> int:
    from ..analysis.evaluate import evaluate
    from ..artifact import save
    from ..core import Context, apply_stage
    from ..prune.structured.plan import count_cost
    from ..zoo import example_inputs, load_dataset, split_train
    from .common import check_fits, check_out, load_model, print_json, print_table

    cfg = build_config(args)
    check_out(args.out)
    model = load_model(args.model, dataset=args.dataset)
    full = load_dataset(args.dataset, "train")
    if args.calib >= len(full):
        from ..core.errors import ConfigError

        raise ConfigError(f"--calib {args.calib} must be smaller than the training split of {args.dataset} "
                          f"({len(full)} examples); pass a smaller --calib")
    train, calib = split_train(full, args.calib, seed=args.seed)
    test = load_dataset(args.dataset, "test")
    check_fits(model, test, dataset=args.dataset)
    inputs = example_inputs(model, args.dataset)
    out = Path(args.out)
    before = {"accuracy": evaluate(model, test)["accuracy"], "params": count_cost(model, inputs, "params"),
              "macs": count_cost(model, inputs, "macs")}
    ctx = Context(train_data=train, calib_data=calib, example_inputs=inputs, dataset=args.dataset,
                  stage_out=out.with_name(out.name + ".work"), progress=not args.no_progress, seed=args.seed)
    result = apply_stage(model, cfg, ctx)
    pruned = result.model
    after = {"accuracy": evaluate(pruned, test)["accuracy"], "params": count_cost(pruned, inputs, "params"),
             "macs": count_cost(pruned, inputs, "macs")}
    save(pruned, out, metadata={"dataset": args.dataset, "prune.structured": cfg.to_dict()})
    report = {"model": args.model, "dataset": args.dataset, "config": cfg.to_dict(), "before": before,
              "after": after, "artifact": str(out), "size_bytes": out.stat().st_size,
              "groups": result.records.get("structured", {}).get("groups", [])}
    if args.json:
        print_json(report)
        return 0
    print_table(f"{args.model}: structured pruning ({args.target} -{args.ratio:.0%})", ["", "before", "after"],
                [[k, before[k], after[k]] for k in ("accuracy", "params", "macs")])
    print(f"saved {out} ({report['size_bytes']:,} bytes)")
    return 0
