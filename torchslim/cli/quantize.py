"""torchslim quantize MODEL --dataset D --method ptq|qat|dynamic|weight-only|mixed|kmeans|half --out FILE

Quantizes in simulation (fake-quant), writes an artifact that `torchslim eval`
reads, and prints test accuracy before and after. Calibration data is a
holdout of the train split (never the test split)."""
from __future__ import annotations

import json
from pathlib import Path

METHODS = ["ptq", "qat", "dynamic", "weight-only", "mixed", "kmeans", "half"]


def add_parser(sub):
    p = sub.add_parser("quantize", help="quantize a model (PTQ, QAT, dynamic, weight-only, mixed, k-means, half)")
    p.add_argument("model", help="artifact path or zoo name")
    p.add_argument("--dataset", required=True)
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--bits", type=int, default=None,
                   help="weight bits (default 8 for ptq/dynamic, 4 for qat/weight-only/kmeans); k-means: log2 clusters")
    p.add_argument("--act-bits", type=int, default=8, help="activation bits (ptq, qat, mixed)")
    p.add_argument("--observer", default="minmax", choices=["minmax", "moving_average", "percentile", "mse", "kl"])
    p.add_argument("--weight-method", default=None, choices=["rtn", "mse", "adaround", "gptq"],
                   help="ptq: rtn|mse|adaround|gptq; weight-only: rtn|gptq")
    p.add_argument("--granularity", default="channel", choices=["channel", "tensor"])
    p.add_argument("--group-size", type=int, default=32, help="weight-only: group size (0 = per channel)")
    p.add_argument("--avg-bits", type=float, default=4.0, help="mixed: average weight bits budget")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"], help="half: target dtype")
    p.add_argument("--calib", type=int, default=1024, help="calibration images held out of the train split")
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs (qat, kmeans)")
    p.add_argument("--lr", type=float, default=1e-4, help="fine-tuning learning rate (qat, kmeans)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="artifact file to write (e.g. q.safetensors)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def build_config(args):
    from ..quantize import (DynamicConfig, HalfConfig, KMeansConfig, MixedConfig, PTQConfig, QATConfig,
                            WeightOnlyConfig)
    from ..train import TrainConfig

    ft = TrainConfig(epochs=args.epochs, lr=args.lr, seed=args.seed)
    m = args.method
    if m == "ptq":
        return PTQConfig(weight_bits=args.bits or 8, act_bits=args.act_bits, observer=args.observer,
                         granularity=args.granularity, weight_method=args.weight_method or "rtn")
    if m == "qat":
        return QATConfig(weight_bits=args.bits or 4, act_bits=args.act_bits, observer=args.observer,
                         granularity=args.granularity, finetune=ft)
    if m == "dynamic":
        return DynamicConfig(bits=args.bits or 8, granularity=args.granularity)
    if m == "weight-only":
        return WeightOnlyConfig(bits=args.bits or 4, group_size=args.group_size, method=args.weight_method or "gptq")
    if m == "mixed":
        return MixedConfig(avg_bits=args.avg_bits, act_bits=args.act_bits, granularity=args.granularity)
    if m == "kmeans":
        return KMeansConfig(bits=args.bits or 4, finetune=ft if args.epochs > 0 else None)
    return HalfConfig(dtype=args.dtype)


def run(args) -> int:
    import torch

    from ..analysis.evaluate import evaluate
    from ..artifact import save
    from ..core import Context, apply
    from ..zoo.data import load_dataset, split_train
    from .common import load_model, print_json, print_table

    torch.manual_seed(args.seed)
    cfg = build_config(args)
    model = load_model(args.model, dataset=args.dataset).eval()
    train, calib = split_train(load_dataset(args.dataset, "train"), args.calib, seed=args.seed)
    test = load_dataset(args.dataset, "test")
    before = evaluate(model, test)["accuracy"]
    out = Path(args.out)
    ctx = Context(train_data=train, calib_data=calib, test_data=test, dataset=args.dataset,
                  progress=not args.no_progress, out_dir=out.parent, stage_out=out.parent / f"{out.stem}-run")
    model = apply(model, cfg, ctx)
    after = evaluate(model, test)["accuracy"]
    path = save(model, out, metadata={"dataset": args.dataset, "quantize": {"name": cfg.name, **cfg.to_dict()}})
    summary = {"model": args.model, "dataset": args.dataset, "method": args.method, "config": cfg.name,
               "accuracy_before": before, "accuracy_after": after, "delta_points": 100 * (after - before),
               "artifact": str(path), "size_bytes": path.stat().st_size, "simulated": args.method != "half"}
    if "mixed_bits" in ctx.extras:
        summary["bits_per_layer"] = ctx.extras["mixed_bits"]
    if args.json:
        print_json(summary)
        return 0
    rows = [["accuracy before (test)", before], ["accuracy after (test, simulation)", after],
            ["change (points)", summary["delta_points"]], ["artifact", str(path)], ["artifact bytes", summary["size_bytes"]]]
    for n, b in summary.get("bits_per_layer", {}).items():
        rows.append([f"bits {n}", b])
    print_table(f"{args.method} quantization of {args.model} on {args.dataset}", ["", "value"], rows)
    return 0
