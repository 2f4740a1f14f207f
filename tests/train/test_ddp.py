from pathlib import Path

import torch
from safetensors.torch import load_file

from ..ddp import run_two_ranks


def test_two_process_ddp_gives_identical_weights(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    run_two_ranks(worker, tmp_path, port=29533)
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # and training happened: the weights moved away from rank 0's init
    torch.manual_seed(1)
    from torchslim.zoo import build_model

    init = build_model("lenet300", dataset="digits").state_dict()
    assert not torch.equal(init["fc1.weight"], a["fc1.weight"])
