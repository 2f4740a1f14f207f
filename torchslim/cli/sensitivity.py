"""torchslim sensitivity MODEL --dataset D --out DIR [--json]

Per-layer accuracy (or loss) vs sparsity on a holdout split of train (never
the test split): DIR/sensitivity.json, DIR/sensitivity.png and a table; with
--target, the greedy per-layer allocation meeting it (DIR/allocation.json)."""
from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub):
    from .common import POSITIVE_INT, bounded

    p = sub.add_parser("sensitivity", help="per-layer pruning sensitivity scan (table, JSON, PNG) and allocation")
    p.add_argument("model", help="artifact path (or zoo name)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--sparsities", default="0.3,0.5,0.7,0.8,0.9,0.95,0.98")
    p.add_argument("--criterion", default="l1",
                   choices=["l1", "l2", "max", "random", "gradient", "taylor", "obd_fisher", "obd_hutchinson"])
    p.add_argument("--metric", default="accuracy", choices=["accuracy", "loss"])
    p.add_argument("--calib", type=POSITIVE_INT, default=5000, help="holdout examples taken from train")
    p.add_argument("--target", type=bounded(float, 0, 1, lo_open=True, hi_open=True), default=None,
                   help="allocate per-layer sparsities removing this fraction")
    p.add_argument("--budget", default="params", choices=["params", "macs", "latency"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    return p


def run(args) -> int:
    from ..artifact.format import atomic_write_bytes
    from ..core.errors import ConfigError
    from ..prune.sensitivity import allocate, sensitivity_scan
    from ..zoo import example_inputs, load_dataset, split_train
    from .common import check_fits, check_out, load_model, print_json, print_table

    try:
        sparsities = [float(s) for s in args.sparsities.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--sparsities {args.sparsities!r}: expected comma-separated fractions") from None
    bad = [s for s in sparsities if not 0 < s < 1]
    if not sparsities or bad:
        what = f"{', '.join(map(str, bad))} {'is' if len(bad) == 1 else 'are'} not in (0, 1)" if bad else "none given"
        raise ConfigError(f"--sparsities {args.sparsities}: {what}; give comma-separated fractions in (0, 1), "
                          "e.g. 0.5,0.7,0.9")
    out = check_out(args.out, folder=True)
    model = load_model(args.model, dataset=args.dataset)
    train = load_dataset(args.dataset, "train")
    check_fits(model, train, dataset=args.dataset)
    _, calib = split_train(train, min(args.calib, len(train) // 5), seed=args.seed)
    scan = sensitivity_scan(model, calib, sparsities=sparsities, criterion=args.criterion, metric=args.metric,
                            example_inputs=example_inputs(model, args.dataset), latency=args.budget == "latency",
                            progress=not args.json)
    scan.save_json(out / "sensitivity.json")
    scan.plot(out / "sensitivity.png", title=f"{Path(args.model).name} on {args.dataset} (holdout of train)")
    result = {"sensitivity": scan.to_dict(), "json": str(out / "sensitivity.json"), "plot": str(out / "sensitivity.png")}
    if args.target is not None:
        alloc = allocate(scan, args.target, budget=args.budget)
        atomic_write_bytes(out / "allocation.json", json.dumps(alloc, indent=2).encode())
        result["allocation"] = alloc
    if args.json:
        print_json(result)
        return 0
    print_table(f"{scan.metric} on {scan.data} (dense {scan.dense:.4f}) vs sparsity of one layer",
                scan.columns(), scan.rows())
    if args.target is not None:
        print_table(f"allocation removing {args.target:.0%} of {args.budget}", ["layer", "sparsity"],
                    [[k, v] for k, v in result["allocation"].items()])
    print(f"wrote {out / 'sensitivity.json'} and {out / 'sensitivity.png'}")
    return 0
