"""Helpers of the process-level tests: the search command, polling its study."""
import os
import sys
import time

import yaml

from .conftest import HOLDOUT, fast_config


def command(model, data, out, config_path, *, trials: int, storage: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "torchslim", "--threads", "1", "auto", str(model), "--dataset", str(data),
           "--holdout", str(HOLDOUT), "--out", str(out), "--trials", str(trials), "--config", str(config_path), "--no-progress"]
    return cmd + (["--storage", storage] if storage else [])


def write_config(path, **over):
    over.setdefault("seeds", 0)  # no warm-start scan: each process starts quicker
    path.write_text(yaml.safe_dump(fast_config(**over)))
    return path


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([os.getcwd(), e.get("PYTHONPATH", "")])
    return e


def load_study(url: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name="auto", storage=url)


def wait_for(pred, *, timeout: float, proc=None, every: float = 0.2):
    """Poll ``pred()`` (exceptions count as False) until true; fail on timeout
    or if ``proc`` exits first."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            v = pred()
            if v:
                return v
        except Exception:  # noqa: BLE001 - the database may not exist yet
            pass
        if proc is not None and proc.poll() is not None:
            output = proc.stdout.read().decode(errors="replace")[-3000:] if proc.stdout else ""
            raise AssertionError(f"the search exited (code {proc.returncode}) before the condition held:\n{output}")
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")
