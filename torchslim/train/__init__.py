"""The training loop every method trains through."""
from .callbacks import Callback, TrainState
from .config import TrainConfig
from . import configs as _configs  # noqa: F401  (the "train" stage handler)
from .loop import FitResult, cross_entropy, fit, lr_factor, make_optimizer

__all__ = ["fit", "FitResult", "TrainConfig", "Callback", "TrainState", "cross_entropy", "make_optimizer", "lr_factor"]
