"""kill -9 at random points of a real `torchslim run` (issue 14).

A small recipe (train with mid-epoch checkpoints, prune + fine-tune, k-means
weight sharing + fine-tune, entropy coding) runs once uninterrupted (the
reference). Then the same run, in fresh folders, is SIGKILLed and rerun until
it finishes:

* seeded scenarios: the first kill comes after a delay drawn from the seed,
  spread over the reference's duration from its first training checkpoint to
  its report.json, plus 10% (start-up and imports before it are jitter and
  hold no state); some seeds kill the rerun once more, a seeded delay after
  its first write;
* a targeted scenario: killed mid-epoch in the train stage, then (rerun) while
  the baseline is measured, then (rerun) inside the codec stage, then rerun to
  the end; a temp file as a kill inside ``atomic_write_bytes`` leaves one is
  planted before the last rerun.

Every finished run must give the reference's report.json except for the
fields listed in ``WALL_CLOCK`` and ``RESUME_RECORD``, the same bytes for the
final artifact (and every stage artifact and the baseline), and no temp files.

The scenarios run two at a time (a 2-core machine) in one module fixture; the
kill points reached are printed (``pytest -s``) and written to
``kill_points.json`` in the test's temp folder.
"""
from __future__ import annotations

import concurrent.futures as cf
import copy
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RECIPE = {
    "name": "kill9",
    "model": {"zoo": "lenet300", "kwargs": {"hidden": [48, 24]}},
    "data": {"dataset": "digits", "holdout": 200},
    "baseline": "dense",
    "measure": {"latency": False},  # no timing noise in the report
    "stages": [
        # 39 steps per epoch; a checkpoint every 4 steps, so kills land mid-epoch; shift: augmentation resumes too
        {"name": "dense", "kind": "train", "epochs": 3, "batch_size": 32, "lr": 0.01, "checkpoint_every_steps": 4,
         "shift": 1},
        {"name": "prune", "kind": "prune.unstructured", "permanent": True,
         "layer_sparsity": {"fc1": 0.8, "fc2": 0.75, "fc3": 0.5},
         "finetune": {"epochs": 2, "batch_size": 32, "lr": 0.003, "checkpoint_every_steps": 4}},
        {"name": "cluster", "kind": "quantize.kmeans", "bits": 4,
         "finetune": {"epochs": 1, "batch_size": 32, "lr": 0.001, "checkpoint_every_steps": 4}},
        {"name": "encode", "kind": "codec.encode", "huffman": True},
    ],
}
FOLDERS = [f"{i}-{s['name']}" for i, s in enumerate(RECIPE["stages"])]
SEEDS = [4, 6, 9]  # first kills at 0.24, 0.79 and 0.46 of the window; 4 and 9 kill their rerun too

# Fields allowed to differ between the reference and a killed-and-resumed run.
WALL_CLOCK = ("created", "stages[].seconds", "stages[].extras.fit_history[].seconds")
RESUME_RECORD = ("stages[].extras.fit_resumed_from",)  # where this run's train stage resumed (None uninterrupted)


def _comparable(report: dict) -> dict:
    r = copy.deepcopy(report)
    r.pop("created")
    for s in r["stages"]:
        s.pop("seconds")
        extras = s.get("extras", {})
        extras.pop("fit_resumed_from", None)
        for h in extras.get("fit_history", []):
            h.pop("seconds")
    return r


def _diff(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only in {'reference' if k in a else 'resumed'}" for k in sorted(set(a) ^ set(b))]
        for k in a.keys() & b.keys():
            out += _diff(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: reference {a!r:.80} != resumed {b!r:.80}"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _artifacts(out: Path, report: dict) -> dict[str, str]:
    """sha256 of the final artifact, the baseline and every stage's files."""
    files = [report["artifact"], "baseline.safetensors"]
    files += [str(p.relative_to(out)) for p in sorted((out / "stages").glob("*/model.*"))]
    return {f: _sha(out / f) for f in files}


def _temp_files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if ".tmp" in p.name)


# ---------------------------------------------------------------- processes
def _start(recipe: Path, out: Path, log: Path, progress: bool = True) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torchslim", "--threads", "1", "run", str(recipe), "--out", str(out)]
    if not progress:
        cmd.append("--no-progress")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    with open(log, "ab") as f:
        p = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    _STARTED.append(p)
    return p


_STARTED: list[subprocess.Popen] = []  # every run this module started: none may outlive a failed scenario


def _last_log_line(log: Path) -> str:
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", log.read_text(errors="replace"))
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    return lines[-1][:100] if lines else ""


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _wait_for(cond, proc: subprocess.Popen, timeout: float = 600) -> bool:
    """Poll ``cond()`` until it is true (True) or the process ends (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        if proc.poll() is not None:
            return bool(cond())
        time.sleep(0.002)
    raise TimeoutError("the run neither reached the kill point nor ended")


def _sleep_unless_done(proc: subprocess.Popen, seconds: float) -> None:
    end = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < end:
        time.sleep(0.005)


def _ckpt_position(path: Path) -> tuple[int, int] | None:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not there yet (or being replaced: atomic rename, so a retry sees a whole file)
        return None
    return ck["epoch"], ck["batch_in_epoch"]


def _kill_point(out: Path) -> str:
    """Where a killed run stopped, read off what it left on disk."""
    sd = out / "stages"
    started = [i for i, f in enumerate(FOLDERS) if (sd / f / "fingerprint.txt").is_file()]
    if not started:
        return "start-up (no stage started)"
    i = started[-1]
    kind = RECIPE["stages"][i]["kind"]
    if (sd / FOLDERS[i] / "stage.json").is_file():
        if i == 0 and not (out / "baseline.json").is_file():
            return "baseline measurement (stage 0 done, baseline.json not written)"
        if i < len(FOLDERS) - 1:
            return f"between stage {i} and stage {i + 1}"
        if not (out / "report.json").is_file():
            return "finish: final artifact / measurement / report.json"
        return "finish: after report.json (report.html or exit)"
    where = f"stage {i} {FOLDERS[i]} ({kind})"
    if (sd / FOLDERS[i] / "model.safetensors").is_file():
        return f"{where}: measuring its saved artifact"
    ckpts = sorted((sd / FOLDERS[i]).rglob("last.pt"))
    if ckpts:
        pos = _ckpt_position(ckpts[-1])
        return f"{where}: training, last checkpoint at epoch {pos[0]} batch {pos[1]}" if pos else where
    trains = RECIPE["stages"][i]["kind"] == "train" or "finetune" in RECIPE["stages"][i]
    return f"{where}: before its first checkpoint" if trains else f"{where}: running"


class Victim:
    """One scenario: a fresh folder, runs started, killed and rerun."""

    def __init__(self, name: str, recipe: Path, root: Path):
        self.name, self.recipe = name, recipe
        self.out, self.log = root / name, root / f"{name}.log"
        self.kills: list[dict] = []
        self.pids: list[int] = []

    def start(self) -> subprocess.Popen:
        with open(self.log, "ab") as f:
            f.write(f"\n===== run {len(self.pids) + 1} =====\n".encode())
        p = _start(self.recipe, self.out, self.log)
        self.pids.append(p.pid)
        return p

    def kill(self, p: subprocess.Popen, trigger: str) -> None:
        alive = p.poll() is None
        if alive:
            p.send_signal(signal.SIGKILL)
        rc = p.wait()
        if alive and rc != -signal.SIGKILL:  # it ended on its own between the check and the signal
            alive = False
        assert rc in (0, -signal.SIGKILL), f"{self.name}: run failed (rc {rc}): {self.log.read_text()[-3000:]}"
        self.kills.append({"trigger": trigger, "killed": alive,
                           "point": _kill_point(self.out) if alive else "not killed: the run had finished",
                           "last_log_line": _last_log_line(self.log)})

    def finish(self) -> dict:
        p = self.start()
        rc = p.wait(timeout=600)
        assert rc == 0, f"{self.name}: final run failed (rc {rc}): {self.log.read_text()[-3000:]}"
        return json.loads((self.out / "report.json").read_text())

    def recipe_written(self):
        """A condition: this run has rewritten recipe.yaml (its first write, after start-up)."""
        before = _mtime(self.out / "recipe.yaml")
        return lambda: _mtime(self.out / "recipe.yaml") not in (None, before)


def _reference(recipe: Path, root: Path) -> dict:
    out, log = root / "ref", root / "ref.log"
    t0 = time.time()
    p = _start(recipe, out, log, progress=False)  # the reference also checks progress output changes nothing
    _wait_for(_first_checkpoint(out).is_file, p)
    t_ck = time.time()
    rc = p.wait(timeout=600)
    t_end = time.time()
    assert rc == 0, log.read_text()[-3000:]
    report = json.loads((out / "report.json").read_text())
    first = (out / "recipe.yaml").stat().st_mtime
    # the timeline of the run, from its files (seconds after its first write)
    marks = {"stage " + f: (out / "stages" / f / "fingerprint.txt").stat().st_mtime - first for f in FOLDERS}
    marks["baseline.json"] = (out / "baseline.json").stat().st_mtime - first
    marks["report.json"] = (out / "report.json").stat().st_mtime - first
    marks["first checkpoint"] = t_ck - first
    # the seeded kills' window: from the first training checkpoint to report.json, plus 10% (the finish:
    # report.json and report.html; the plotting tail is long and slow under load, kills there say little)
    window = 1.1 * ((out / "report.json").stat().st_mtime - t_ck)
    return {"out": out, "report": report, "startup": first - t0, "duration": t_end - first, "window": window,
            "marks": marks}


def _first_checkpoint(out: Path) -> Path:
    return out / "stages" / FOLDERS[0] / "checkpoints" / "last.pt"


def _seeded(seed: int, recipe: Path, root: Path, ref_future) -> Victim:
    """Killed after a seeded delay from its first training checkpoint (before
    it, the run only starts up and imports: the rerun's kill covers that),
    then possibly once more in the rerun, then run to the end."""
    ref = ref_future.result()
    rng = random.Random(seed)
    first = rng.random()  # a fraction of the reference's window
    again = rng.uniform(0.0, 0.5) if rng.random() < 0.5 else None  # from the rerun's first write
    v = Victim(f"seed{seed}", recipe, root)
    window, whose = ref["window"], "the reference's"
    for _ in range(2):
        p = v.start()
        _wait_for(_first_checkpoint(v.out).is_file, p)
        t_ck = time.time()
        d = first * window
        _sleep_unless_done(p, d)
        v.kill(p, f"{d:.2f} s after its first checkpoint ({first:.2f} of {whose} {window:.1f} s)")
        if v.kills[-1]["killed"]:
            break
        # this run was faster than the reference: start over, the delay scaled to its own window
        window, whose = 1.1 * ((v.out / "report.json").stat().st_mtime - t_ck), "its own"
        shutil.rmtree(v.out)
    if again is not None:
        p = v.start()
        _wait_for(v.recipe_written(), p)
        d = again * ref["duration"]
        _sleep_unless_done(p, d)
        v.kill(p, f"rerun, {d:.2f} s after its first write ({again:.2f} of the reference's {ref['duration']:.1f} s)")
    v.report = v.finish()
    return v


def _targeted(recipe: Path, root: Path) -> Victim:
    v = Victim("targeted", recipe, root)
    dense = v.out / "stages" / FOLDERS[0]
    # 1. mid-epoch in the train stage: once a checkpoint inside the second epoch is on disk
    p = v.start()

    ckpt, seen = dense / "checkpoints" / "last.pt", [None]

    def mid_epoch():
        stamp = _mtime(ckpt)
        if stamp is None or stamp == seen[0]:
            return False
        seen[0] = stamp
        pos = _ckpt_position(ckpt)
        return pos is not None and pos[0] == 1 and pos[1] >= 8

    _wait_for(mid_epoch, p)
    v.kill(p, "train stage: a checkpoint in epoch 2 at batch >= 8 is on disk")
    # 2. the rerun, while it measures the baseline: the train stage's record is written just before
    p = v.start()
    _wait_for(lambda: (dense / "stage.json").is_file(), p)
    v.kill(p, "stages/0-dense/stage.json written (the baseline is measured next)")
    # 3. the next rerun, inside the codec stage: a few ms after it starts
    p = v.start()
    enc = v.out / "stages" / FOLDERS[-1] / "fingerprint.txt"
    _wait_for(enc.is_file, p)
    _sleep_unless_done(p, 0.02)
    v.kill(p, "stages/3-encode started, +20 ms")
    # a kill inside atomic_write_bytes leaves its temp file (named after the dead writer's pid)
    planted = v.out / "stages" / FOLDERS[1] / "finetune" / "checkpoints" / f".last.pt.tmp{v.pids[0]}"
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_bytes(b"partial checkpoint")
    v.report = v.finish()
    return v


def _run_all(recipe: Path, root: Path, results: dict) -> None:
    with cf.ThreadPoolExecutor(max_workers=2) as pool:  # two runs at a time: the reference is timed under load too
        ref = pool.submit(_reference, recipe, root)
        futures = {"targeted": pool.submit(_targeted, recipe, root)}
        for s in SEEDS:
            futures[f"seed{s}"] = pool.submit(_seeded, s, recipe, root, ref)
        results["ref"] = ref.result()
        for name, f in futures.items():
            try:
                results[name] = f.result()
            except Exception as e:  # reported by that scenario's test
                results[name] = e


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill9")
    recipe = root / "kill9.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE, sort_keys=False))
    results = {}
    try:
        _run_all(recipe, root, results)
    finally:
        for p in _STARTED:
            if p.poll() is None:
                p.kill()
                p.wait()
    summary = {name: v.kills for name, v in results.items() if isinstance(v, Victim)}
    summary["reference"] = {k: round(v, 2) if isinstance(v, float) else v for k, v in results["ref"].items()
                            if k in ("startup", "duration", "window")}
    summary["reference"]["marks"] = {k: round(t, 2) for k, t in results["ref"]["marks"].items()}
    (root / "kill_points.json").write_text(json.dumps(summary, indent=2))
    print("\nkill points:\n" + json.dumps(summary, indent=2))
    return results


def _check_matches_reference(v, ref: dict) -> None:
    if isinstance(v, Exception):
        raise v
    diff = _diff(_comparable(ref["report"]), _comparable(v.report))
    assert not diff, f"{v.name} (kills: {v.kills}): report.json differs:\n" + "\n".join(diff[:30])
    assert v.report["artifact"] == ref["report"]["artifact"] == "model.tslim"
    a, b = _artifacts(ref["out"], ref["report"]), _artifacts(v.out, v.report)
    assert a == b, f"{v.name} (kills: {v.kills}): artifact bytes differ: " \
                   f"{[k for k in a if a[k] != b.get(k)]}"
    assert _temp_files(v.out) == [], f"{v.name}: temp files left"
    # the train stage's resume record agrees with where it was killed
    assert "fit_resumed_from" not in ref["report"]["stages"][0]["extras"]  # None: the runner leaves it out
    resumed = v.report["stages"][0]["extras"].get("fit_resumed_from")
    in_train = [k["point"] for k in v.kills if re.match(r"stage 0 .*(checkpoint at|measuring)", k["point"])]
    assert (resumed is not None) == bool(in_train), (resumed, v.kills)


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_at_a_random_point_then_resumed_matches_uninterrupted(runs, seed):
    v = runs[f"seed{seed}"]
    _check_matches_reference(v, runs["ref"])
    assert any(k["killed"] for k in getattr(v, "kills", [])) or isinstance(v, Exception), \
        f"seed {seed}: no kill landed before the run finished: {v.kills}"


def test_killed_mid_epoch_during_baseline_and_in_codec_then_resumed_matches(runs):
    v = runs["targeted"]
    _check_matches_reference(v, runs["ref"])
    points = [k["point"] for k in v.kills]
    assert all(k["killed"] for k in v.kills), v.kills
    m = re.match(r"stage 0 0-dense \(train\): training, last checkpoint at epoch (\d+) batch (\d+)$", points[0])
    assert m and int(m[1]) == 1 and int(m[2]) >= 8, points  # mid-epoch: resumed inside epoch 2
    assert points[1].startswith("baseline measurement"), points
    assert points[2].startswith("stage 3 3-encode"), points
    assert v.report["stages"][0]["extras"]["fit_resumed_from"]["epoch"] == 1
    assert v.report["stages"][0]["extras"]["fit_resumed_from"]["batch_in_epoch"] > 0


def test_reference_is_a_real_compression(runs):
    rep = runs["ref"]["report"]
    assert rep["baseline"]["accuracy"] > 0.75 and rep["final"]["accuracy"] > 0.7
    assert rep["compression_ratio"] > 5
    assert _temp_files(runs["ref"]["out"]) == []
