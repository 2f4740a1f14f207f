"""Launched by torchrun in test_ddp.py: the plain fit call, no DDP-specific code."""
import sys

import torch
from safetensors.torch import save_file

from torchslim.train import TrainConfig, fit
from torchslim.train import distributed
from torchslim.zoo import build_model, load_dataset

torch.set_num_threads(1)
out = sys.argv[1]
torch.manual_seed(int(distributed.world()[0]) + 1)  # different init per rank: DDP must sync it
model = build_model("lenet300", dataset="digits")
fit(model, load_dataset("digits", "train"), TrainConfig(epochs=2, batch_size=64, lr=2e-3), progress=False)
rank, world = distributed.world()
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}/rank{rank}.safetensors",
          metadata={"world": str(world)})
