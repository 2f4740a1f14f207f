"""The study's database: an ordinary Optuna RDB storage, so any number of
worker processes can share it and ``optuna-dashboard`` can read it.

* Default: SQLite at ``DIR/study.db`` (``sqlite:///DIR/study.db``); several
  workers on one machine may share it. ``postgresql://user@host:port/db``
  lets workers on several machines share one study (they must also share
  ``DIR``, where the artifacts go).
* Trials send heartbeats; a trial whose process died (kill -9, a lost
  machine) is failed and re-queued with the same parameters (Optuna's
  ``RetryHeartbeatStaleTrialCallback``), and its rerun resumes the trial's
  folder. On the same machine a dead process is noticed at once (its pid is
  recorded with the trial); elsewhere after the grace period.
* ``study_lock`` serialises the few steps that must not interleave between
  workers (deciding whether the budget allows another trial and asking for
  it; enqueueing the strategy's proposals once): a PostgreSQL advisory lock,
  or a file lock beside the SQLite file.
* ``logical_trials``: the trials that count toward ``n_trials`` (a failed
  trial that was re-queued is replaced by its retry).
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import os
import socket
import warnings
from pathlib import Path
from typing import Iterator

from ..core.errors import ConfigError

__all__: list[str] = []  # internal: import from the module

HOST = socket.gethostname()


def default_url(out: str | Path) -> str:
    return f"sqlite:///{(Path(out) / 'study.db').resolve()}"


def masked_url(url: str) -> str:
    """``url`` with any password hidden (for reports and logs)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy understands: show nothing secret
        return url.split("@")[-1] if "@" in url else url


def _dialect(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0]


def _with_driver(url: str) -> str:
    """``postgresql://`` with a driver that is installed: SQLAlchemy's default
    (psycopg 3) if importable, else psycopg2."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def open_storage(url: str, *, heartbeat: int, grace: int | None, max_retry: int | None):
    """An Optuna ``RDBStorage`` with heartbeats and retries of dead trials."""
    import optuna

    url = _with_driver(url)
    dialect = _dialect(url)
    if dialect not in ("sqlite", "postgresql", "mysql"):
        raise ConfigError(f"storage: {masked_url(url)!r} is not a database URL; use sqlite:///PATH/study.db or "
                          "postgresql://USER@HOST:PORT/DB")
    if dialect == "sqlite" and url.rstrip("/").endswith(":memory:"):
        raise ConfigError("storage: an in-memory SQLite database cannot be resumed or shared; give a file")
    kwargs = {"connect_args": {"timeout": 120}} if dialect == "sqlite" else {"pool_pre_ping": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat,
                                                 grace_period=grace, heartbeat_stale_trial_callback=retry)
        except ImportError as e:
            raise ConfigError(f"storage {masked_url(url)!r}: the database driver is missing ({e}); install "
                              "torchslim[auto] (psycopg2-binary for PostgreSQL)") from None
        except Exception as e:  # noqa: BLE001 - connection refused, bad credentials, ...
            if type(e).__module__.startswith("sqlalchemy"):
                raise ConfigError(f"storage {masked_url(url)!r}: cannot open the database: "
                                  f"{str(e).splitlines()[0]}") from None
            raise
    if dialect == "sqlite":
        _sqlite_wal(storage.engine)
    return storage


def _sqlite_wal(engine) -> None:
    """Write-ahead logging, synced at checkpoints: a commit no longer waits
    for the disk (a killed process loses nothing the OS has; only a power cut
    could lose the last commits), and readers do not block the writer."""
    from sqlalchemy import event

    def on_connect(dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened before the listener get replaced


def _lock_key(study_name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"torchslim.auto:{study_name}".encode()).digest()[:8], "big") >> 1


@contextlib.contextmanager
def study_lock(storage, study_name: str, *, fallback_dir: str | Path) -> Iterator[None]:
    """Mutual exclusion between the workers of one study: a PostgreSQL
    advisory lock on the study's database, else an exclusive file lock
    beside the SQLite file (or in ``fallback_dir``)."""
    url = storage.url
    if _dialect(url) == "postgresql":
        from sqlalchemy import text

        key = _lock_key(study_name)
        with storage.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    db = url.split(":///", 1)[1] if _dialect(url) == "sqlite" and ":///" in url else None
    path = Path(f"{db}.{study_name}.lock") if db else Path(fallback_dir) / f".{study_name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def logical_trials(trials: list) -> list:
    """The trials that count toward the budget: every trial except those
    re-queued after their process died (their retry stands for them)."""
    retried = {n for t in trials for n in (t.system_attrs.get("retry_history") or [])}
    return [t for t in trials if t.number not in retried]


def original_number(system_attrs: dict, number: int) -> int:
    """The number of the first trial of a retry series (names its folder)."""
    first = system_attrs.get("failed_trial")
    return int(first) if first is not None else int(number)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_dead_trials(study, storage, *, grace: float, on_fail=None) -> list[int]:
    """Fail the RUNNING trials whose process is gone and re-queue them: on
    this machine by their recorded pid; a trial that never recorded one after
    ``grace`` seconds; elsewhere by Optuna's heartbeat check. ``on_fail(frozen)``
    runs for each (e.g. to close its pruner trial). Returns their numbers.
    Call it under ``study_lock``."""
    import copy

    import optuna
    from optuna.trial import TrialState

    now = datetime.datetime.now()
    failed = []
    callback = storage.get_heartbeat_stale_trial_callback()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, pid = t.user_attrs.get("host"), t.user_attrs.get("pid")
        dead = (host == HOST and pid is not None and not pid_alive(pid)) or \
            (pid is None and t.datetime_start is not None and (now - t.datetime_start).total_seconds() > grace)
        if not dead:
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        frozen = copy.deepcopy(storage.get_trial(t._trial_id))
        failed.append(frozen.number)
        if on_fail is not None:
            on_fail(frozen)
        if callback is not None:
            callback(study, frozen)
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if t.number not in before:
            failed.append(t.number)
            if on_fail is not None:
                on_fail(t)
    return failed


class Heartbeat:
    """Records the trial's heartbeat every ``interval`` seconds in a thread
    while the block runs (what ``Study.optimize`` does for its own trials)."""

    def __init__(self, storage, trial_id: int, interval: float):
        import threading

        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the trial itself reports real errors
                pass

    def __enter__(self) -> "Heartbeat":
        self.storage.record_heartbeat(self.trial_id)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
