"""torchslim distill --teacher T --student S --dataset D --epochs N --out PATH"""
from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub):
    from .common import NONNEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, bounded

    p = sub.add_parser("distill", help="train a student to imitate a teacher (soft targets; writes the student artifact)")
    p.add_argument("--teacher", required=True, help="teacher: an artifact (trained) or a zoo name with --teacher-epochs")
    p.add_argument("--student", required=True, help="student: a zoo name or an artifact")
    p.add_argument("--student-kwargs", default="{}", help='zoo kwargs of the student as JSON, e.g. \'{"hidden": [30]}\'')
    p.add_argument("--teacher-kwargs", default="{}", help="zoo kwargs of the teacher as JSON")
    p.add_argument("--teacher-epochs", type=NONNEGATIVE_INT, default=0,
                   help="train a zoo teacher this many epochs first (a zoo name alone is untrained)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--epochs", type=NONNEGATIVE_INT, default=10)
    p.add_argument("--temperature", type=POSITIVE_FLOAT, default=4.0)
    p.add_argument("--alpha", type=bounded(float, 0, 1), default=0.9,
                   help="weight of the soft-target term; 1-alpha on hard labels")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=128)
    p.add_argument("--lr", type=POSITIVE_FLOAT, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps-per-epoch", type=POSITIVE_INT, default=None)
    p.add_argument("--no-cache", action="store_true", help="run the teacher on every batch instead of caching its outputs")
    p.add_argument("--out", required=True, help="student artifact path (.safetensors) or a folder")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def output_paths(out: str) -> tuple[Path, Path]:
    """(artifact, run folder) of ``--out``, checked before any work: a file
    path (.safetensors/.tslim) or a folder."""
    from .common import check_out

    p = Path(out)
    if p.suffix in (".safetensors", ".tslim"):
        check_out(out)
        return p, p.parent / (p.stem + ".run")
    check_out(out, folder=True)
    return p / "model.safetensors", p


def _kwargs(text: str, flag: str) -> dict:
    from ..core.errors import ConfigError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{flag} {text!r}: not JSON ({e}); give a JSON object, e.g. '{{\"hidden\": [30]}}'") \
            from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} {text!r}: a {type(value).__name__}, not a JSON object; give keyword arguments "
                          "of the zoo model, e.g. '{\"hidden\": [30]}'")
    return value


def run(args) -> int:
    import torch

    from ..analysis.evaluate import evaluate
    from ..artifact import save
    from ..core.errors import ConfigError
    from ..distill import DistillConfig, distill
    from ..train import TrainConfig, distributed, fit
    from ..zoo.data import load_dataset
    from ..zoo.models import model_names
    from .common import check_fits, load_model, print_json, print_table

    s_kw, t_kw = _kwargs(args.student_kwargs, "--student-kwargs"), _kwargs(args.teacher_kwargs, "--teacher-kwargs")
    artifact, run_dir = output_paths(args.out)
    if args.teacher in model_names() and args.teacher_epochs <= 0:
        raise ConfigError(f"--teacher {args.teacher!r} is a zoo name, i.e. an untrained model; pass a trained "
                          "artifact or --teacher-epochs N to train it first")
    cfg = DistillConfig(temperature=args.temperature, alpha=args.alpha, cache_teacher=not args.no_cache,
                        train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                          max_steps_per_epoch=args.max_steps_per_epoch))
    train, test = load_dataset(args.dataset, "train"), load_dataset(args.dataset, "test")
    torch.manual_seed(args.seed)
    teacher = load_model(args.teacher, dataset=args.dataset, **(t_kw if args.teacher in model_names() else {}))
    check_fits(teacher, train, dataset=args.dataset, role=f"--teacher {args.teacher}")
    with torch.random.fork_rng(devices=[]):  # the student is checked now, built after the teacher's training as before
        probe = load_model(args.student, dataset=args.dataset, **(s_kw if args.student in model_names() else {}))
        check_fits(probe, train, dataset=args.dataset, role=f"--student {args.student}")
    del probe
    if args.teacher in model_names():
        fit(teacher, train, TrainConfig(epochs=args.teacher_epochs, batch_size=args.batch_size, lr=args.lr,
                                        seed=args.seed, max_steps_per_epoch=args.max_steps_per_epoch),
            out_dir=run_dir / "teacher", progress=not args.no_progress)
    student = load_model(args.student, dataset=args.dataset, **(s_kw if args.student in model_names() else {}))
    result = distill(student, teacher, train, cfg, out_dir=run_dir / "student", progress=not args.no_progress)
    if not distributed.is_main():
        return 0
    t_acc, s_acc = evaluate(teacher, test)["accuracy"], evaluate(student, test)["accuracy"]
    save(student, artifact, metadata={"dataset": args.dataset, "distill": cfg.to_dict(), "teacher": args.teacher})
    summary = {"teacher": args.teacher, "student": args.student, "dataset": args.dataset, "artifact": str(artifact),
               "teacher_accuracy": t_acc, "accuracy": s_acc, "epochs": args.epochs, "seconds": result.seconds,
               **result.teacher_stats}
    if args.json:
        print_json(summary)
    else:
        print_table(f"distilled {args.student} from {args.teacher} on {args.dataset}", ["metric", "value"],
                    [["teacher test accuracy", t_acc], ["student test accuracy", s_acc],
                     ["seconds", result.seconds], ["artifact", str(artifact)]])
    return 0
