import pytest
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def flop_counter(model, inputs, *, kwargs=None):
    """Independent oracle: torch's own FlopCounterMode (aten level, 2 FLOPs per MAC for
    mm/addmm/bmm/baddbmm/convolution/SDPA). Run with autograd on (MultiheadAttention's no-grad
    fast path is one fused op it does not know) and the math SDPA backend (the CPU flash kernel
    has no registered formula), so every matmul is seen. Returns (total, per-module dict)."""
    was = model.training
    model.eval()
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
            model(*inputs, **(kwargs or {}))
    finally:
        model.train(was)
    per = {name: sum(ops.values()) for name, ops in fc.get_flop_counts().items()}
    return fc.get_total_flops(), per


@pytest.fixture(scope="session")
def oracle():
    return flop_counter


@pytest.fixture(scope="session")
def minilm_model():
    from torchslim.zoo import build_model

    return build_model("minilm")
