"""torchslim eval PATH --dataset D [--json]: rebuild from the artifact alone and measure."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("eval", help="measure accuracy of a saved artifact (or a zoo model) on a test split")
    p.add_argument("model", help="artifact path (or zoo name)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--json", action="store_true")
    p.add_argument("--confusion", action="store_true", help="also print the confusion matrix")
    return p


def run(args) -> int:
    from ..analysis.evaluate import evaluate
    from ..zoo.data import load_dataset
    from .common import load_model, print_json, print_table

    model = load_model(args.model, dataset=args.dataset)
    m = evaluate(model, load_dataset(args.dataset, args.split), batch_size=args.batch_size)
    m = {"model": args.model, "dataset": args.dataset, "split": args.split, **m}
    if args.json:
        print_json(m)
        return 0
    rows = [[k, m[k]] for k in ("n", "accuracy", "error", "top5", "precision_macro", "recall_macro", "f1_macro") if k in m]
    print_table(f"{args.model} on {args.dataset}/{args.split}", ["metric", "value"], rows)
    if args.confusion:
        cm = m["confusion_matrix"]
        print_table("confusion matrix (rows: true, columns: predicted)", ["true"] + [str(i) for i in range(len(cm))],
                    [[str(i)] + row for i, row in enumerate(cm)])
    return 0
