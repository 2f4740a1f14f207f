"""torchslim quantize MODEL --dataset D --method ptq|qat|dynamic|weight-only|mixed|kmeans|half --out FILE

Quantizes in simulation (fake-quant), writes an artifact that `torchslim eval`
reads, and prints test accuracy before and after. Calibration data is a
holdout of the train split (never the test split)."""
from __future__ import annotations

from pathlib import Path

METHODS = ["ptq", "qat", "dynamic", "weight-only", "mixed", "kmeans", "half"]


def add_parser(sub):
    from .common import NONNEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, bounded

    p = sub.add_parser("quantize", help="quantize a model (PTQ, QAT, dynamic, weight-only, mixed, k-means, half)")
    p.add_argument("model", help="artifact path or zoo name")
    p.add_argument("--dataset", required=True)
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--bits", type=bounded(int, 1, 8), default=None,
                   help="weight bits (default 8 for ptq/dynamic, 4 for qat/weight-only/kmeans); k-means: log2 clusters")
    p.add_argument("--act-bits", type=bounded(int, 2, 8), default=8, help="activation bits (ptq, qat, mixed)")
    p.add_argument("--observer", default="minmax", choices=["minmax", "moving_average", "percentile", "mse", "kl"])
    p.add_argument("--weight-method", default=None, choices=["rtn", "mse", "adaround", "gptq"],
                   help="ptq: rtn|mse|adaround|gptq; weight-only: rtn|gptq")
    p.add_argument("--granularity", default="channel", choices=["channel", "tensor"])
    p.add_argument("--group-size", type=NONNEGATIVE_INT, default=32, help="weight-only: group size (0 = per channel)")
    p.add_argument("--avg-bits", type=POSITIVE_FLOAT, default=4.0, help="mixed: average weight bits budget")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"], help="half: target dtype")
    p.add_argument("--calib", type=POSITIVE_INT, default=1024, help="calibration images held out of the train split")
    p.add_argument("--epochs", type=NONNEGATIVE_INT, default=1, help="fine-tuning epochs (qat, kmeans)")
    p.add_argument("--lr", type=POSITIVE_FLOAT, default=1e-4, help="fine-tuning learning rate (qat, kmeans)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="artifact file to write (e.g. q.safetensors)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


# config fields set from a flag: a config's range error names the flag too
_FLAGS = {"weight_bits": "--bits", "bits": "--bits", "act_bits": "--act-bits", "avg_bits": "--avg-bits",
          "group_size": "--group-size"}


def build_config(args):
    """The method's config; a value out of its range (checked by the config's
    ``validate``) is a ConfigError naming the flag, never replaced by a default."""
    import re

    from ..core.errors import ConfigError

    try:
        return _build_config(args)
    except ConfigError as e:
        field = re.search(r"Config\.(\w+)", str(e))
        flag = _FLAGS.get(field.group(1)) if field else None
        if flag is None:
            raise
        raise ConfigError(f"{flag} {getattr(args, flag[2:].replace('-', '_'))}: {e}") from None


def _bits(args, default: int) -> int:
    return default if args.bits is None else args.bits  # --bits 0 is an error, not "the default"


def _build_config(args):
    from ..quantize import (DynamicConfig, HalfConfig, KMeansConfig, MixedConfig, PTQConfig, QATConfig,
                            WeightOnlyConfig)
    from ..train import TrainConfig

    ft = TrainConfig(epochs=args.epochs, lr=args.lr, seed=args.seed)
    m = args.method
    if m == "ptq":
        return PTQConfig(weight_bits=_bits(args, 8), act_bits=args.act_bits, observer=args.observer,
                         granularity=args.granularity, weight_method=args.weight_method or "rtn")
    if m == "qat":
        return QATConfig(weight_bits=_bits(args, 4), act_bits=args.act_bits, observer=args.observer,
                         granularity=args.granularity, finetune=ft)
    if m == "dynamic":
        return DynamicConfig(bits=_bits(args, 8), granularity=args.granularity)
    if m == "weight-only":
        return WeightOnlyConfig(bits=_bits(args, 4), group_size=args.group_size, method=args.weight_method or "gptq")
    if m == "mixed":
        return MixedConfig(avg_bits=args.avg_bits, act_bits=args.act_bits, granularity=args.granularity)
    if m == "kmeans":
        return KMeansConfig(bits=_bits(args, 4), finetune=ft if args.epochs > 0 else None)
    return HalfConfig(dtype=args.dtype)


def run(args) -> int:
    import torch

    from ..analysis.evaluate import evaluate
    from ..artifact import save
    from ..core import Context, apply_stage
    from ..zoo.data import load_dataset, split_train
    from ..core.errors import ConfigError
    from .common import check_fits, check_out, load_model, print_json, print_table

    torch.manual_seed(args.seed)
    cfg = build_config(args)
    check_out(args.out)
    model = load_model(args.model, dataset=args.dataset).eval()
    full = load_dataset(args.dataset, "train")
    trains = args.method == "qat" or (args.method == "kmeans" and args.epochs > 0)
    if trains and args.calib >= len(full):  # fine-tuning needs what the calibration holdout leaves
        raise ConfigError(f"--calib {args.calib} leaves nothing to fine-tune on: the training split of "
                          f"{args.dataset} has {len(full)} examples; pass a smaller --calib")
    train, calib = split_train(full, args.calib, seed=args.seed)
    test = load_dataset(args.dataset, "test")
    check_fits(model, test, dataset=args.dataset)
    before = evaluate(model, test)["accuracy"]
    out = Path(args.out)
    ctx = Context(train_data=train, calib_data=calib, dataset=args.dataset,
                  progress=not args.no_progress, out_dir=out.parent, stage_out=out.parent / f"{out.stem}-run")
    result = apply_stage(model, cfg, ctx)
    model = result.model
    after = evaluate(model, test)["accuracy"]
    path = save(model, out, metadata={"dataset": args.dataset, "quantize": {"name": cfg.name, **cfg.to_dict()}})
    summary = {"model": args.model, "dataset": args.dataset, "method": args.method, "config": cfg.name,
               "accuracy_before": before, "accuracy_after": after, "delta_points": 100 * (after - before),
               "artifact": str(path), "size_bytes": path.stat().st_size, "simulated": args.method != "half"}
    if "mixed_bits" in result.records:
        summary["bits_per_layer"] = result.records["mixed_bits"]
    if args.json:
        print_json(summary)
        return 0
    rows = [["accuracy before (test)", before], ["accuracy after (test, simulation)", after],
            ["change (points)", summary["delta_points"]], ["artifact", str(path)], ["artifact bytes", summary["size_bytes"]]]
    for n, b in summary.get("bits_per_layer", {}).items():
        rows.append([f"bits {n}", b])
    print_table(f"{args.method} quantization of {args.model} on {args.dataset}", ["", "value"], rows)
    return 0
