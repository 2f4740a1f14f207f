"""torchslim auto MODEL --dataset D --budget "max_drop=0.5,speedup>=1.8,bytes<=N" --out DIR

Automatic compression to a target: an Optuna search (TPE, NSGA-II, the
NetAdapt-style greedy allocation, or an AMC-style agent) over generated
recipes, on a real database (``DIR/study.db`` by default; ``--storage
postgresql://...`` shares one study between workers on several machines).
Rerunning the same command resumes; ``--workers N`` runs N processes here.
Writes ``DIR/front.json`` (the Pareto front within the budget: each point an
artifact with its own report) and ``DIR/report.html``. Watch it with
``optuna-dashboard sqlite:///DIR/study.db``.

Also runnable as ``python -m torchslim.auto MODEL ...``."""
from __future__ import annotations

import argparse

HELP = "search compressed versions of a model meeting a target (Pareto front, resumable, several workers)"


def add_arguments(p) -> None:
    p.add_argument("model", help="zoo name, artifact, Hugging Face folder or pkg.module:factory (trained, or "
                                 "give --train-epochs)")
    p.add_argument("--dataset", required=True, help="data set name or your own data (a path, see zoo.user_data)")
    p.add_argument("--budget", default="", help='constraints, e.g. "max_drop=0.5,speedup>=1.8,bytes<=12k" '
                                                "(accuracy judged on the holdout split, never test)")
    p.add_argument("--objectives", default=None, help="comma list of accuracy, bytes, latency (default bytes,accuracy)")
    p.add_argument("--strategy", default=None, choices=["tpe", "nsga2", "greedy", "amc"])
    p.add_argument("--trials", type=int, default=None, help="trials in all, all workers together (default 20)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///DIR/study.db)")
    p.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    p.add_argument("--holdout", type=int, default=None, help="holdout examples split off train (default 5000)")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training examples")
    p.add_argument("--test-limit", type=int, default=None, help="measure on the first N test examples")
    p.add_argument("--train-epochs", type=int, default=0, help="train MODEL first (in DIR/baseline) for this many epochs")
    p.add_argument("--config", default=None, help="a YAML/JSON file of AutoConfig fields (an auto.search stage's)")
    p.add_argument("--out", required=True, help="search folder; rerun with the same folder to resume")
    p.add_argument("--json", action="store_true", help="print front.json")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="AutoConfig fields, dotted: space.unstructured.min_density=0.01 finetune.epochs=2")


def _overrides_anywhere(p) -> None:
    """key=value overrides may also follow the options (``--out DIR a.b=1``)."""
    parse = p.parse_known_args

    def parse_known_args(args=None, namespace=None):
        ns, rest = parse(args, namespace)
        extra = [a for a in rest if "=" in a and not a.startswith("-")]
        ns.overrides = list(getattr(ns, "overrides", None) or []) + extra
        return ns, [a for a in rest if a not in extra]

    p.parse_known_args = parse_known_args


def add_parser(sub):
    p = sub.add_parser("auto", help=HELP)
    add_arguments(p)
    _overrides_anywhere(p)
    return p


def build(args) -> tuple:
    """(AutoConfig, DataSpec, TrainConfig or None) from the arguments."""
    from ..auto.configs import AutoConfig
    from ..core.errors import ConfigError
    from ..recipe.overrides import apply_overrides
    from ..recipe.schema import DataSpec
    from ..train import TrainConfig

    raw: dict = {}
    if args.config:
        from pathlib import Path

        from ..recipe.schema import yaml_load

        p = Path(args.config)
        if not p.is_file():
            raise ConfigError(f"--config: no such file {p}")
        raw = yaml_load(p.read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"--config {p}: expected a mapping of AutoConfig fields")
        raw.pop("kind", None)
        raw.pop("name", None)
    for key, value in (("budget", args.budget or None), ("objectives", args.objectives),
                       ("strategy", args.strategy), ("n_trials", args.trials), ("storage", args.storage),
                       ("timeout", args.timeout)):
        if value is not None:
            raw[key] = value
    overrides = list(getattr(args, "overrides", None) or [])
    if overrides:
        raw = apply_overrides(raw, overrides)
    cfg = AutoConfig.from_dict(raw, where="auto")
    data = {"dataset": args.dataset}
    for key, value in (("holdout", args.holdout), ("train_limit", args.train_limit), ("test_limit", args.test_limit)):
        if value is not None:
            data[key] = value
    train = TrainConfig(epochs=args.train_epochs) if args.train_epochs > 0 else None
    return cfg, DataSpec.from_dict(data, where="data"), train


def run(args) -> int:
    from ..auto.api import auto
    from .common import print_json, print_table

    cfg, data, train = build(args)
    result = auto(args.model, data=data, out=args.out, config=cfg, train=train, workers=args.workers,
                  progress=not args.no_progress)
    if args.json:
        print_json(result.data)
        return 0
    objectives = list(cfg.objectives)
    rows = []
    for p in result.front:
        m = p["metrics"]
        speed = m.get("speedup") or {}
        rows.append([p["trial"], p["strategy"], *[p["values"][o] for o in objectives],
                     100 * (m.get("accuracy") or 0), m.get("size_bytes"),
                     ", ".join(f"b{b} {v:.2f}x" for b, v in speed.items()) or None, p["artifact"]])
    print_table(f"Pareto front within the budget ({cfg.budget or 'no budget'}): {len(rows)} point(s)",
                ["trial", "strategy", *objectives, "test acc %", "bytes", "speedup", "artifact"], rows)
    print(f"wrote {args.out}/front.json and {args.out}/report.html; study: {result.data['dashboard']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m torchslim.auto``: this verb without the rest of the CLI."""
    import sys

    from ..core.errors import TorchslimError

    p = argparse.ArgumentParser(prog="python -m torchslim.auto", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    add_arguments(p)
    _overrides_anywhere(p)
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        return int(run(args) or 0)
    except TorchslimError as e:
        print(f"torchslim auto: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("torchslim auto: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
