"""Intermediate results of a running trial: the holdout accuracy after every
fine-tune epoch goes to whoever is listening (the search's pruner), which may
stop the trial by raising ``optuna.TrialPruned`` from inside ``fit``.

The listener is a context variable set by the search around one trial's
recipe run; outside a search the ``auto.*`` stages train exactly like their
plain counterparts."""
from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator

from ..train.callbacks import Callback, TrainState

__all__ = ["reporting", "EpochReport"]

_LISTENER: contextvars.ContextVar[Callable[[float, int], None] | None] = contextvars.ContextVar(
    "torchslim_auto_listener", default=None)


@contextlib.contextmanager
def reporting(listener: Callable[[float, int], None] | None) -> Iterator[None]:
    """Within the block, every ``auto.*`` fine-tune epoch calls
    ``listener(holdout_accuracy, epoch)`` (epoch 1-based, of that fine-tune)."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


class EpochReport(Callback):
    """Passes the epoch's ``eval_accuracy`` (fit evaluates ``eval_data``, the
    holdout, after every epoch) to the listener, from epoch ``start`` (1-based)
    on: a gradual-pruning stage reports only once its model has its final
    sparsity, so trials are compared on models they will actually ship."""

    def __init__(self, listener: Callable[[float, int], None], *, start: int = 1):
        self.listener, self.start = listener, start

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        acc = metrics.get("eval_accuracy")
        if acc is not None and state.epoch + 1 >= self.start:
            self.listener(float(acc), state.epoch + 1)


def epoch_callbacks(*, start: int = 1) -> list[Callback]:
    """``[EpochReport]`` while a listener is set, else nothing."""
    listener = _LISTENER.get()
    return [EpochReport(listener, start=start)] if listener is not None else []
