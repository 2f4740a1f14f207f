"""``python -m torchslim.auto worker DIR``: one more worker of the search
prepared in DIR (see ``torchslim.auto.worker``). The search itself starts
with ``torchslim auto MODEL --dataset D ...``."""
import sys

from .worker import main as worker_main

if sys.argv[1:2] != ["worker"]:
    sys.exit("usage: python -m torchslim.auto worker DIR [--index N]  (start a search with: torchslim auto ...)")
sys.exit(worker_main(sys.argv[2:]))
