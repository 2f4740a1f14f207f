from pathlib import Path

import torch
from safetensors.torch import load_file

from ..ddp import run_two_ranks


def test_qat_and_kmeans_under_two_process_ddp(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    run_two_ranks(worker, tmp_path, port=29547)
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert a.keys() == b.keys() and "qat.fc1.weight_quant.scale" in a
    for k in a:  # both ranks hold the same weights and learned scales
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    for name in ("km.fc1.weight", "km.fc2.weight", "km.fc3.weight"):  # still on a 2^3 codebook
        assert len(torch.unique(a[name])) <= 8
