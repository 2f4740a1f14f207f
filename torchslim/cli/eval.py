"""torchslim eval PATH --dataset D [--json]: rebuild from the artifact alone and measure.

D is a data set name or your own data (a path or spec, see ``zoo.user_data``).
With a file of sentences (``--dataset sentences.txt``) and ``--reference
ORIGINAL`` it measures embedding fidelity instead: cosine to the original
model's embeddings (mean, min) and nearest-neighbour agreement."""
from __future__ import annotations


def add_parser(sub):
    from .common import POSITIVE_INT

    p = sub.add_parser("eval", help="measure accuracy of a saved artifact (or a zoo model) on a test split")
    p.add_argument("model", help="artifact path, zoo name, Hugging Face folder or pkg.module:factory")
    p.add_argument("--dataset", required=True, help="data set name or your own data (.npz, x.npy:y.npy, image "
                                                    "folder, .csv, saved HF dataset, .txt of sentences)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--batch-size", type=POSITIVE_INT, default=1000)
    p.add_argument("--reference", default=None, metavar="MODEL",
                   help="with a .txt of sentences: the original model to compare embeddings with")
    p.add_argument("--json", action="store_true")
    p.add_argument("--confusion", action="store_true", help="also print the confusion matrix")
    p.add_argument("--robustness", action="store_true",
                   help="compare with --reference (the original) under corruptions at several severities: accuracy, "
                        "top-1 agreement, calibration error, per-class drop, per-layer sensitivity")
    p.add_argument("--limit", type=POSITIVE_INT, default=None, help="with --robustness: the first N examples only")
    p.add_argument("--html", default=None, metavar="FILE", help="with --robustness: also write the section with plots")
    return p


def _robustness(args, model, data) -> int:
    from ..analysis.robustness import compare
    from ..core.errors import ConfigError
    from ..prune.sensitivity import sensitivity_scan
    from ..report.robustness import robustness_tables, write_robustness_html
    from .common import check_fits, load_model, print_json, print_table

    if args.reference is None:
        raise ConfigError("--robustness compares two models: give --reference ORIGINAL (the uncompressed model)")
    reference = load_model(args.reference, dataset=args.dataset)
    check_fits(reference, data, dataset=args.dataset)
    result = compare(reference, model, data, batch_size=args.batch_size, limit=args.limit, scan_fn=sensitivity_scan)
    if args.html:
        write_robustness_html(result, args.html, title=f"torchslim: robustness of {args.model}")
    if args.json:
        print_json(result)
        return 0
    for title, cols, rows in robustness_tables(result):
        print_table(title, cols, rows)
    return 0


def _fidelity(args) -> int:
    from ..analysis.fidelity import embedding_fidelity
    from ..core.errors import ConfigError
    from ..zoo.sources import is_hf_dir
    from ..zoo.user_data import check_data_fits, load_text
    from .common import load_model, print_json, print_table

    if args.reference is None:
        raise ConfigError(f"--dataset {args.dataset}: sentences have no labels to score; give --reference MODEL "
                          "(the original encoder) to measure embedding fidelity")
    model = load_model(args.model)
    reference = load_model(args.reference)
    # the tokenizer of whichever side is a Hugging Face folder, else MiniLM's
    tok_source = next((s for s in (args.reference, args.model) if is_hf_dir(s)), None)
    data = load_text(args.dataset, tokenizer=tok_source)
    check_data_fits(model, data, where=args.dataset)
    m = {"model": args.model, "reference": args.reference, "dataset": args.dataset,
         **embedding_fidelity(reference, model, data, batch_size=min(args.batch_size, 256))}
    if args.json:
        print_json(m)
        return 0
    print_table(f"{args.model} vs {args.reference} on {args.dataset}", ["metric", "value"],
                [[k, m[k]] for k in ("n", "mean_cosine", "min_cosine", "nn_agreement")])
    return 0


def run(args) -> int:
    from ..analysis.evaluate import evaluate
    from ..zoo.data import load_dataset
    from ..zoo.user_data import is_user_data, parse_data_spec
    from .common import check_fits, load_model, print_json, print_table

    if is_user_data(args.dataset) and parse_data_spec(args.dataset).kind == "text":
        return _fidelity(args)
    model = load_model(args.model, dataset=args.dataset)
    data = load_dataset(args.dataset, args.split)
    check_fits(model, data, dataset=args.dataset)  # names the expected and the given shapes
    if args.robustness:
        return _robustness(args, model, data)
    m = evaluate(model, data, batch_size=args.batch_size)
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
