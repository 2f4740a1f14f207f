"""Progress of a search on the terminal: a progress bar over the trial budget
and a live table of the latest trials (rich), refreshed from the study's
database every few seconds, so it shows every worker's trials. Without a
terminal, one line per trial instead."""
from __future__ import annotations

import sys
import threading
from typing import Callable

__all__: list[str] = []  # internal: import from the module


class Display:
    """Silent."""

    def started(self, number: int, strategy: str, params: dict) -> None: ...
    def finished(self, number: int, state: str) -> None: ...
    def refresh(self) -> None: ...
    def close(self) -> None: ...
    def log(self, msg: str) -> None: ...


class LineDisplay(Display):
    """One line per event on stderr."""

    def __init__(self, fetch: Callable[[], list[dict]], n_trials: int):
        self.fetch, self.n = fetch, n_trials

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def started(self, number, strategy, params) -> None:
        self.log(f"trial {number} ({strategy}) started")

    def finished(self, number, state) -> None:
        rows = {r["trial"]: r for r in self.fetch()}
        r = rows.get(number) or {}
        done = sum(1 for x in rows.values() if x["state"] in ("COMPLETE", "PRUNED", "FAIL"))
        vals = ", ".join(f"{k} {_short(v)}" for k, v in (r.get("values") or {}).items())
        ok = "" if r.get("feasible") is None else (" within budget" if r.get("feasible") else " outside budget")
        self.log(f"trial {number}: {state.lower()}{': ' + vals if vals else ''}{ok} [{done}/{self.n}]")


def _short(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return str(v)


class LiveDisplay(Display):
    """rich: a bar over the budget and the latest ``rows`` trials, refreshed
    every ``every`` seconds from the database."""

    def __init__(self, fetch: Callable[[], list[dict]], n_trials: int, objectives: list[str], *, rows: int = 12,
                 every: float = 2.0):
        from rich.console import Console
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.fetch, self.n, self.objectives, self.rows, self.every = fetch, n_trials, objectives, rows, every
        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=self.console)
        self.task = self.progress.add_task("trials", total=n_trials)
        self.live = Live(self._render([]), console=self.console, refresh_per_second=2, transient=False)
        self.live.start()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _render(self, rows: list[dict]):
        from rich.console import Group
        from rich.table import Table

        t = Table(title="latest trials", expand=False)
        for c in ["trial", "state", "strategy", *self.objectives, "budget", "seconds", "note"]:
            t.add_column(c, justify="right" if c not in ("state", "strategy", "note") else "left")
        for r in rows[-self.rows:]:
            vals = r.get("values") or {}
            ok = r.get("feasible")
            t.add_row(str(r["trial"]), r["state"].lower(), str(r.get("strategy") or ""),
                      *[_short(vals.get(o)) for o in self.objectives],
                      "-" if ok is None else ("met" if ok else "missed"), _short(r.get("seconds")),
                      (r.get("pruned_by") or r.get("error") or "")[:60])
        done = sum(1 for r in rows if r["state"] in ("COMPLETE", "PRUNED", "FAIL"))
        self.progress.update(self.task, completed=min(done, self.n))
        return Group(self.progress, t)

    def refresh(self) -> None:
        with self._lock:
            try:
                self.live.update(self._render(self.fetch()))
            except Exception:  # noqa: BLE001 - the display never stops the search
                pass

    def _poll(self) -> None:
        while not self._stop.wait(self.every):
            self.refresh()

    def log(self, msg: str) -> None:
        self.console.print(msg)

    def started(self, number, strategy, params) -> None:
        self.refresh()

    def finished(self, number, state) -> None:
        self.refresh()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.refresh()
        self.live.stop()


def make_display(progress: bool, fetch: Callable[[], list[dict]], n_trials: int, objectives: list[str]) -> Display:
    """A live rich display on a terminal, lines otherwise, nothing if not ``progress``."""
    if not progress:
        return Display()
    if sys.stderr.isatty():
        return LiveDisplay(fetch, n_trials, objectives)
    return LineDisplay(fetch, n_trials)
