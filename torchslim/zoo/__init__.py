"""Model zoo and offline data sets; your own models (``sources``) and data (``user_data``)."""
from .data import ArrayDataset, DatasetInfo, Loader, dataset_info, dataset_names, load_dataset, split_train
from .models import build_model, model_description, model_names, register_model
from .sources import load_model
from .streaming import LazyArray, StreamingDataset

__all__ = [
    "ArrayDataset", "DatasetInfo", "Loader", "dataset_info", "dataset_names", "load_dataset", "split_train",
    "build_model", "model_description", "model_names", "register_model", "example_inputs", "load_model",
    "LazyArray", "StreamingDataset",
]


def example_inputs(model, dataset: str | None = None, batch: int = 1):
    """Example inputs for a model: its own (``model.example_inputs``, or a
    Hugging Face model's from its config), else the data set's input shape."""
    import torch

    if hasattr(model, "example_inputs"):
        return tuple(model.example_inputs(batch))
    arch = getattr(model, "torchslim_arch", None) or {}
    if "hf" in arch:
        from .sources import hf_example_inputs

        return hf_example_inputs(model, batch)
    shape = (arch.get("kwargs") or {}).get("input_shape")
    if shape is None and dataset is not None:
        shape = dataset_info(dataset).input_shape
    if shape is None:
        shape = (1, 28, 28)
    return (torch.rand(batch, *shape),)
