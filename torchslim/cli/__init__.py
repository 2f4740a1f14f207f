"""The ``torchslim`` command: a thin shell over the library. Each verb is a
small module in this package with ``add_parser(subparsers)`` and
``run(args) -> int``; add one by appending its module name to ``COMMANDS``."""
from __future__ import annotations

import argparse
import importlib
import sys

from ..core.errors import TorchslimError

COMMANDS = [
    "train",
    "eval",
    "profile",
    "run",
    "compare",
    "prune",
    "sensitivity",
    "distill",
    "decompose",
    "quantize",
    "export",
    "bench",
    "prune-structured",
    "encode",
    "auto",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchslim", description="Compress PyTorch models, measured honestly.")
    from .common import POSITIVE_INT

    parser.add_argument("--threads", type=POSITIVE_INT, default=None, help="torch intra-op threads (default: torch's)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
        p = mod.add_parser(sub)
        if any(a.dest in ("model", "teacher", "student") for a in p._actions) and \
                not any(a.dest == "auto" for a in p._actions):
            from .common import add_auto_option

            add_auto_option(p)  # every verb that loads a model accepts a Hugging Face folder
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from .common import AUTO

    token = AUTO.set(getattr(args, "auto", None))
    try:
        return int(args._run(args) or 0)
    except TorchslimError as e:
        # one line naming the input at fault and the fix; any other exception is a bug and keeps its traceback
        message = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
        print(f"torchslim {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"torchslim {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        AUTO.reset(token)


if __name__ == "__main__":
    sys.exit(main())
