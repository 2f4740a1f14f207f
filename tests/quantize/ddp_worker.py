"""Launched by torchrun in test_ddp.py: QAT (LSQ) and k-means fine-tuning through
the plain handlers, no DDP-specific code."""
import sys

import torch
from safetensors.torch import save_file

from torchslim.core import Context, apply
from torchslim.quantize import KMeansConfig, QATConfig
from torchslim.train import TrainConfig, distributed
from torchslim.zoo import build_model, load_dataset
from torchslim.zoo.data import split_train

torch.set_num_threads(1)
out = sys.argv[1]
rank, world = distributed.world()
train, calib = split_train(load_dataset("digits", "train"), 256)
ft = TrainConfig(epochs=1, batch_size=64, lr=1e-3)
ctx = Context(train_data=train, calib_data=calib, progress=False)
torch.manual_seed(0)
qat = apply(build_model("lenet300", dataset="digits"), QATConfig(weight_bits=4, num_batches=1, finetune=ft), ctx)
torch.manual_seed(rank + 1)  # different init per rank: DDP must sync it
km = apply(build_model("lenet300", dataset="digits"), KMeansConfig(bits=3, finetune=ft), ctx)
state = {f"qat.{k}": v for k, v in qat.state_dict().items()}
state.update({f"km.{k}": v for k, v in km.state_dict().items()})
save_file({k: v.contiguous() for k, v in state.items()}, f"{out}/rank{rank}.safetensors", metadata={"world": str(world)})
