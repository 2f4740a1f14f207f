"""Launch a worker script under torchrun with two CPU (gloo) processes."""
import os
import subprocess
import sys
from pathlib import Path


def run_two_ranks(worker: Path, out_dir: Path, *, port: int, timeout: int = 300) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", str(worker), str(out_dir)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
