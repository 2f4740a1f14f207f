"""`make bench`: run every benchmark module (benchmarks/bench_*.py) in turn.
Pass names to run a subset: python -m benchmarks.run_all foundation prune"""
from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    names = sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    chosen = argv or names
    failed = []
    for name in chosen:
        if name not in names:
            print(f"unknown benchmark {name!r}; known: {names}")
            return 2
        print(f"\n=== benchmark {name} ===", flush=True)
        t0 = time.perf_counter()
        try:
            importlib.import_module(f"benchmarks.bench_{name}").main()
        except Exception:  # keep going; report at the end
            import traceback

            traceback.print_exc()
            failed.append(name)
        print(f"=== {name}: {time.perf_counter() - t0:.0f} s ===", flush=True)
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
