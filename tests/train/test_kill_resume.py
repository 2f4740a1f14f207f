"""Kill a real `torchslim train` process mid-epoch and resume it."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from torchslim.artifact import load

ARGS = ["lenet300", "--dataset", "mnist", "--epochs", "2", "--batch-size", "32", "--max-steps-per-epoch", "300",
        "--checkpoint-every-steps", "40", "--lr", "1e-3", "--shift", "1", "--no-progress", "--json"]  # shift: augmentation must resume exactly too


def run_cli(out: Path, **popen):
    cmd = [sys.executable, "-m", "torchslim", "--threads", "1", "train", *ARGS, "--out", str(out)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def test_kill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    ref = run_cli(tmp_path / "ref")
    victim = run_cli(tmp_path / "victim")
    ckpt = tmp_path / "victim" / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    while time.time() < deadline:
        if ckpt.exists():
            state = torch.load(ckpt, weights_only=True)
            if state["epoch"] == 0 and state["batch_in_epoch"] >= 80:
                break
        if victim.poll() is not None:
            raise AssertionError(f"training ended before it could be killed: {victim.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "victim" / "model.safetensors").exists()
    resumed = run_cli(tmp_path / "victim")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()[-2000:]
    summary = json.loads(out)
    assert summary["resumed_from"]["epoch"] == 0 and summary["resumed_from"]["batch_in_epoch"] >= 80
    ref_out, ref_err = ref.communicate(timeout=300)
    assert ref.returncode == 0, ref_err.decode()[-2000:]
    a = load(tmp_path / "ref" / "model.safetensors")
    b = load(tmp_path / "victim" / "model.safetensors")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
    assert summary["accuracy"] > 0.9
