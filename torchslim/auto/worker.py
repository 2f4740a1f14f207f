"""``python -m torchslim.auto worker DIR [--index I] [--threads T]``: one
more worker process of the search prepared in DIR (``auto(..., workers=N)``
starts these; on another machine sharing DIR and a PostgreSQL storage, start
them by hand)."""
from __future__ import annotations

import argparse
import sys

__all__: list[str] = []  # internal: import from the module


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m torchslim.auto worker", description=__doc__)
    p.add_argument("out", help="the search folder (holding worker.json)")
    p.add_argument("--index", type=int, default=1, help="this worker's number (seeds its sampler)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--progress", action="store_true", help="one line per trial on stderr")
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from ..core.errors import TorchslimError
    from .api import join

    try:
        summary = join(args.out, worker=args.index, progress=args.progress)
    except TorchslimError as e:
        print(f"torchslim auto worker: error: {e}", file=sys.stderr)
        return 2
    print(f"worker {summary['worker']} (pid {summary['pid']}) ran trials {summary['trials']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
