"""Shared pieces of the auto tests: a small trained model on digits (trained
once per session) and the settings of a fast search."""
import copy

import pytest
import torch

HOLDOUT = 200


@pytest.fixture(scope="session")
def digits_data(tmp_path_factory):
    """The digits data set as your own data (an .npz of its train/test splits):
    a worker process then loads it without importing scikit-learn."""
    import numpy as np

    from torchslim.zoo import load_dataset

    tr, te = load_dataset("digits", "train"), load_dataset("digits", "test")
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x_train=tr.x.numpy(), y_train=tr.y.numpy(), x_test=te.x.numpy(), y_test=te.y.numpy())
    return str(path)


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory, digits_data):
    """A trained lenet300 (64-32 hidden) artifact on digits (train minus the holdout)."""
    from torchslim.artifact import save
    from torchslim.train import TrainConfig, fit
    from torchslim.zoo import build_model, load_dataset, split_train

    torch.manual_seed(0)
    train, _ = split_train(load_dataset(digits_data, "train"), HOLDOUT, seed=0)
    model = build_model("lenet300", dataset="digits", hidden=[64, 32])
    fit(model, train, TrainConfig(epochs=6, lr=0.01, batch_size=64), progress=False)
    return save(model, tmp_path_factory.mktemp("digits") / "lenet300.safetensors", sparse=False)


FAST = {
    "objectives": ["bytes", "accuracy"],
    "budget": "max_drop=4",
    "pruner": "none",
    "trial_html": False,
    "heartbeat": 1,
    "grace": 3,
    "seeds": 1,
    "startup_trials": 2,
    "finetune": {"epochs": 1, "lr": 0.002, "batch_size": 64},
    "space": {"finetune": {"epochs": [1, 1]}, "unstructured": {"min_density": 0.15, "frequency": 5},
              "quantize": {"bits": [3, 6], "epochs": [0, 0], "bias_bits": None}, "distill": {"choices": [False]}},
}


def fast_config(**over) -> dict:
    cfg = copy.deepcopy(FAST)
    cfg.update(over)
    return cfg
