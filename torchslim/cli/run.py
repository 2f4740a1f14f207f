"""torchslim run RECIPE --out DIR [key=value ...]: run a recipe (resumable)."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("run", help="run a compression recipe (YAML) and write report.json / report.html / the artifact")
    p.add_argument("recipe", help="recipe YAML file (see recipes/)")
    p.add_argument("--out", required=True, help="output folder; rerun with the same folder to resume")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides, e.g. stages.1.sparsity=0.95 or stages.prune.finetune.epochs=3")
    p.add_argument("--no-resume", action="store_true", help="start over, deleting earlier stages in --out")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--layers", action="store_true", help="also print the per-layer table")
    p.add_argument("--json", action="store_true", help="print report.json instead of tables")
    _overrides_anywhere(p)
    return p


def _overrides_anywhere(p) -> None:
    """argparse gives positionals only before the first option; let
    key=value overrides also follow the options (``--out DIR a.b=1``)."""
    parse = p.parse_known_args

    def parse_known_args(args=None, namespace=None):
        ns, rest = parse(args, namespace)
        extra = [a for a in rest if "=" in a and not a.startswith("-")]
        ns.overrides = list(getattr(ns, "overrides", None) or []) + extra
        return ns, [a for a in rest if a not in extra]

    p.parse_known_args = parse_known_args


def _preflight(args) -> None:
    """Everything a bad input can break, checked before the runner writes
    anything into --out: the folder, the recipe with its overrides, and the
    model on the data (an artifact or a factory may expect another shape; a
    zoo model is built for the data, a Hugging Face model is checked by the
    runner)."""
    from ..recipe.schema import load_recipe
    from .common import check_out

    check_out(args.out, folder=True)
    recipe = load_recipe(args.recipe, args.overrides)
    spec = recipe.model
    if spec.hf is not None or (spec.zoo is not None and not spec.kwargs):
        return
    from ..zoo.data import load_dataset
    from ..zoo.sources import load_model
    from ..zoo.user_data import check_data_fits

    ds = recipe.data.dataset
    check_data_fits(load_model(spec, dataset=ds), load_dataset(ds, "train"), where=f"data.dataset {ds!r}")


def run(args) -> int:
    from ..recipe.runner import run_recipe
    from ..report.terminal import print_report
    from .common import print_json

    _preflight(args)
    report = run_recipe(args.recipe, args.out, overrides=args.overrides, resume=not args.no_resume,
                        progress=not args.no_progress)
    if args.json:
        print_json(report)
    else:
        print_report(report, layers=args.layers)
        print(f"wrote {args.out}/report.json, {args.out}/report.html and {args.out}/{report['artifact']}")
    return 0
