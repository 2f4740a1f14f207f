"""Model zoo and offline data sets."""
from .data import ArrayDataset, DatasetInfo, Loader, dataset_info, dataset_names, load_dataset, split_train
from .models import build_model, model_description, model_names, register_model

__all__ = [
    "ArrayDataset", "DatasetInfo", "Loader", "dataset_info", "dataset_names", "load_dataset", "split_train",
    "build_model", "model_description", "model_names", "register_model", "example_inputs",
]


def example_inputs(model, dataset: str | None = None, batch: int = 1):
    """Example inputs for a model: the data set's input shape, or the model's own."""
    import torch

    if hasattr(model, "example_inputs"):
        return tuple(model.example_inputs(batch))
    arch = getattr(model, "torchslim_arch", None) or {}
    shape = (arch.get("kwargs") or {}).get("input_shape")
    if shape is None and dataset is not None:
        shape = dataset_info(dataset).input_shape
    if shape is None:
        shape = (1, 28, 28)
    return (torch.rand(batch, *shape),)
