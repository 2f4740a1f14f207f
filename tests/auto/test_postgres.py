"""Two worker processes share one study on a real PostgreSQL server started
by the test (127.0.0.1; skipped, saying why, only when none can be started,
and failed instead with TORCHSLIM_REQUIRE_POSTGRES=1): every trial is run exactly once, none is lost, the
budget is spent exactly, both workers took part."""
import json
import os
import subprocess

import pytest

from torchslim.auto.storage import logical_trials

from . import pg
from .conftest import fast_config
from .procs import command, env, load_study, write_config

N_TRIALS = 5


@pytest.fixture(scope="module")
def postgres():
    try:
        server = pg.start()
    except pg.Unavailable as e:
        if os.environ.get("TORCHSLIM_REQUIRE_POSTGRES") == "1":  # CI installs PostgreSQL: a skip would hide it
            pytest.fail(f"TORCHSLIM_REQUIRE_POSTGRES=1 but no PostgreSQL server could be started: {e}")
        pytest.skip(f"no PostgreSQL server could be started: {e}")
    yield server
    server.stop()


def test_two_workers_one_study(tmp_path, digits_model, digits_data, postgres):
    url = postgres.database()
    out = tmp_path / "search"
    # two workers started together (both prepare under the folder's lock; one study on the server)
    config = write_config(tmp_path / "auto.yaml", space={**fast_config()["space"], "finetune": {"epochs": [2, 2]}})
    cmd = command(digits_model, digits_data, out, config, trials=N_TRIALS, storage=url)
    procs = [subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)

    study = load_study(url)
    trials = study.get_trials()
    counted = logical_trials(trials)
    assert len(trials) == len(counted) == N_TRIALS  # no extra trial, no retry needed
    assert sorted(t.number for t in counted) == list(range(N_TRIALS))
    assert all(t.state.name == "COMPLETE" for t in counted)
    # each trial ran exactly once, in its own folder, by one worker, and both workers ran trials
    folders = sorted(p.name for p in (out / "trials").iterdir())
    assert folders == [f"{n:04d}" for n in range(N_TRIALS)]
    for t in counted:
        rec = json.loads((out / t.user_attrs["dir"] / "auto.json").read_text())
        assert rec["trial"] == t.number and rec["params"] == t.params
    pids = {t.user_attrs["pid"] for t in counted}
    assert len(pids) == 2, f"one worker ran every trial: {pids}"
    front = json.loads((out / "front.json").read_text())
    assert front["storage"].startswith("postgresql://") and front["counts"] == {"complete": N_TRIALS}
