"""torchslim decompose MODEL --method svd|tucker|cp|separable --keep F --out PATH [--dataset D --finetune-epochs N]"""
from __future__ import annotations



def add_parser(sub):
    from .common import NONNEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, bounded

    p = sub.add_parser("decompose", help="low-rank decomposition (SVD / Tucker-2 / CP) or separable replacement")
    p.add_argument("model", help="artifact path or zoo name")
    p.add_argument("--method", required=True, choices=["svd", "tucker", "cp", "separable"])
    p.add_argument("--keep", type=bounded(float, 0, 1, lo_open=True), default=0.25,
                   help="fraction of the decomposed layers' parameters kept (svd/tucker/cp)")
    p.add_argument("--layers", nargs="*", default=None,
                   help="qualified layer names (default: every supported layer except the final classifier Linear)")
    p.add_argument("--exclude", nargs="*", default=(), help="qualified layer names to leave intact")
    p.add_argument("--depth-multiplier", type=POSITIVE_INT, default=1,
                   help="separable: depthwise filters per input channel")
    p.add_argument("--dataset", default=None, help="data set for fine-tuning and for the accuracy report")
    p.add_argument("--finetune-epochs", type=NONNEGATIVE_INT, default=0)
    p.add_argument("--lr", type=POSITIVE_FLOAT, default=1e-4)
    p.add_argument("--distill", action="store_true", help="fine-tune by distillation from the original model")
    p.add_argument("--max-steps-per-epoch", type=POSITIVE_INT, default=None)
    p.add_argument("--out", required=True, help="output artifact path (.safetensors) or a folder")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args) -> int:
    import copy

    import torch

    from ..analysis.evaluate import evaluate
    from ..artifact import save
    from ..core.config import config_class
    from ..core.context import Context
    from ..core.errors import ConfigError
    from ..core.scope import Scope
    from ..decompose import decompose_stage
    from ..distill import DistillConfig
    from ..train import TrainConfig
    from ..zoo.data import load_dataset, split_train
    from .common import check_fits, load_model, print_json, print_table
    from .distill import output_paths

    if args.finetune_epochs and not args.dataset:
        raise ConfigError("--finetune-epochs needs --dataset")
    artifact, run_dir = output_paths(args.out)  # checked before any work
    model = load_model(args.model, dataset=args.dataset)
    names = [n for n, _ in model.named_modules() if n]
    for flag, given in (("--layers", args.layers or ()), ("--exclude", args.exclude)):
        unknown = [n for n in given if n not in names]
        if unknown:
            raise ConfigError(f"{flag} {' '.join(unknown)}: no such layer in {args.model}; its layers are "
                              f"{names[:20]}{' ...' if len(names) > 20 else ''}")
    original = copy.deepcopy(model).eval()
    exclude = list(args.exclude)
    if not args.layers:
        # the classifier is small and fragile (a 100->10 layer at keep 0.25 gets rank 2): leave it intact
        linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
        if linears and linears[-1] not in exclude:
            exclude.append(linears[-1])
    scope = Scope(names=tuple(args.layers or ()), exclude_names=tuple(exclude))
    finetune = (TrainConfig(epochs=args.finetune_epochs, lr=args.lr, max_steps_per_epoch=args.max_steps_per_epoch)
                if args.finetune_epochs else None)
    distill = DistillConfig(alpha=0.5, train=finetune) if (args.distill and finetune) else None
    cls = config_class(f"decompose.{args.method}")
    if args.method == "separable":
        cfg = cls(scope=scope, depth_multiplier=args.depth_multiplier, finetune=finetune, distill=distill)
    else:
        cfg = cls(scope=scope, keep=args.keep, finetune=finetune, distill=distill)
    ctx = Context(dataset=args.dataset, stage_out=run_dir if finetune else None, progress=not args.no_progress)
    test = None
    if args.dataset:
        ctx.train_data = load_dataset(args.dataset, "train")
        check_fits(model, ctx.train_data, dataset=args.dataset)
        ctx.calib_data = split_train(ctx.train_data, min(2000, len(ctx.train_data) // 10))[1]
        test = load_dataset(args.dataset, "test")
    records = decompose_stage(model, cfg, ctx).records["decompose"]
    save(model, artifact, metadata={"dataset": args.dataset, "decompose": cfg.to_dict(), "source": args.model})
    done = [r for r in records if r["status"] == "decomposed"]
    summary = {
        "model": args.model, "method": args.method, "artifact": str(artifact),
        "layers_decomposed": len(done), "layers_skipped": len(records) - len(done),
        "params_before": sum(p.numel() for p in original.parameters()),
        "params_after": sum(p.numel() for p in model.parameters()),
        "decomposed_params_before": sum(r["params_before"] for r in done),
        "decomposed_params_after": sum(r["params_after"] for r in done),
        "layers": records,
    }
    if test is not None:
        summary["accuracy_before"] = evaluate(original, test)["accuracy"]
        summary["accuracy"] = evaluate(model, test)["accuracy"]
    if args.json:
        print_json(summary)
        return 0
    print_table(f"{args.method} of {args.model}", ["layer", "status", "rank", "params before", "params after"],
                [[r["layer"], r["status"], str(r.get("rank", "-")), r["params_before"], r.get("params_after")]
                 for r in records])
    rows = [["params", summary["params_before"], summary["params_after"]]]
    if test is not None:
        rows.append(["test accuracy", summary["accuracy_before"], summary["accuracy"]])
    print_table(f"artifact {artifact}", ["", "before", "after"], rows)
    return 0
