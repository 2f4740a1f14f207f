"""kill -9 a SQLite study run at a random point mid-search, rerun the same
command: no finished trial is lost or changed, the interrupted one is failed
and re-run (in its own folder, resumed), the budget is exactly spent."""
import os
import random
import signal
import subprocess
import time

from torchslim.auto.storage import logical_trials

from .procs import command, env, load_study, wait_for, write_config

N_TRIALS = 4


def test_kill9_mid_trial_then_resume(tmp_path, digits_model, digits_data):
    seed = int(os.environ.get("TORCHSLIM_KILL_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    print(f"kill seed {seed} (TORCHSLIM_KILL_SEED={seed} repeats this run)")
    out = tmp_path / "search"
    url = f"sqlite:///{out / 'study.db'}"
    cmd = command(digits_model, digits_data, out, write_config(tmp_path / "auto.yaml"), trials=N_TRIALS)
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def one_done_one_running():
            if not (out / "worker.json").is_file():  # the search has not created its database yet
                return False
            ts = load_study(url).get_trials()
            return any(t.state.name == "COMPLETE" for t in ts) and any(t.state.name == "RUNNING" for t in ts)

        wait_for(one_done_one_running, timeout=120, proc=proc)
        time.sleep(rng.uniform(0.0, 1.0))  # somewhere inside the next trial (or between two)
        assert proc.poll() is None, "the search finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    before = load_study(url).get_trials()
    finished = {t.number: t.values for t in before if t.state.name == "COMPLETE"}
    interrupted = [t for t in before if t.state.name == "RUNNING"]
    assert finished and len(interrupted) <= 1

    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    trials = load_study(url).get_trials()
    by_number = {t.number: t for t in trials}
    for n, values in finished.items():  # no finished trial lost or redone
        assert by_number[n].state.name == "COMPLETE" and by_number[n].values == values
    for t in interrupted:  # failed, then re-run from its own folder
        assert by_number[t.number].state.name == "FAIL"
        retry = [r for r in trials if t.number in (r.system_attrs.get("retry_history") or [])]
        assert len(retry) == 1 and retry[0].state.name == "COMPLETE"
        # the values drawn before the kill are kept (a kill while drawing leaves the rest to draw)
        assert t.params.items() <= retry[0].params.items() and retry[0].user_attrs["dir"] == t.user_attrs["dir"]
    counted = logical_trials(trials)
    assert len(counted) == N_TRIALS and all(t.state.name == "COMPLETE" for t in counted)
    assert len({t.user_attrs["dir"] for t in counted}) == N_TRIALS  # one folder per trial
    assert (out / "front.json").is_file() and (out / "report.html").is_file()
