"""The compact artifact end to end: save_compact -> torchslim.load / eval."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import torchslim
from torchslim.artifact import set_submodule
from torchslim.codec import EncodeConfig, load_compact, read_compact, save_compact
from torchslim.codec.tensorcodec import tensor_patterns
from torchslim.core.config import apply, apply_stage, config_class
from torchslim.core.context import Context
from torchslim.core.errors import ConfigError
from torchslim.zoo import build_model

REPO = Path(__file__).resolve().parents[2]


def prune_cluster_(model, density=0.08, k=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            cb = torch.randn(k, generator=g) * 0.05
            keep = torch.rand(p.shape, generator=g) < density
            p.copy_(torch.where(keep, cb[torch.randint(0, k, p.shape, generator=g)], torch.zeros(())))
    return model


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and sa[k].shape == sb[k].shape, k
        assert (tensor_patterns(sa[k]) == tensor_patterns(sb[k])).all(), k


def test_lenet300_round_trip_and_ratio(tmp_path):
    m = prune_cluster_(build_model("lenet300", dataset="mnist"))
    path = tmp_path / "m.tslim"
    stats = save_compact(m, path)
    assert stats["file_bytes"] == path.stat().st_size
    assert stats["dense_fp32_bytes"] == 1_066_440
    assert stats["compression_ratio"] > 35  # 8% density, 32 uniform random values
    assert stats["header_bytes"] < 400
    fc1 = stats["tensors"]["fc1.weight"]
    assert fc1["layout"] == "relative" and fc1["codebook_size"] == 32
    for key in ("fixed_bits", "huffman_bits", "entropy_bits"):
        assert fc1["index"][key] > 0 and fc1["weight"][key] > 0
    m2 = torchslim.load(path)
    assert_same_state(m, m2)
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(m.eval()(x), m2(x))
    assert not m2.training and m2.torchslim_arch == m.torchslim_arch


def test_structure_changes_and_bn_buffers(tmp_path):
    m = build_model("lenet5", dataset="mnist")
    # a structurally pruned conv and the layers reading it
    convs = [n for n, mod in m.named_modules() if isinstance(mod, nn.Conv2d)]
    c1, c2 = m.get_submodule(convs[0]), m.get_submodule(convs[1])
    set_submodule(m, convs[0], nn.Conv2d(c1.in_channels, 7, c1.kernel_size))
    set_submodule(m, convs[1], nn.Conv2d(7, c2.out_channels, c2.kernel_size))
    prune_cluster_(m, density=0.3, k=16)
    path = tmp_path / "m.tslim"
    save_compact(m, path, metadata={"note": "structured"})
    meta, _ = read_compact(path)
    # only what differs from a fresh build (width changes by name only, see test_resized.py)
    assert set(meta["structure"]) | set(meta.get("resized", [])) == set(convs[:2])
    assert meta["structure"] == {}
    m2 = torchslim.load(path)
    assert m2.get_submodule(convs[0]).out_channels == 7 and m2.torchslim_metadata == {"note": "structured"}
    assert_same_state(m, m2)

    r = build_model("resnet8", dataset="mnist")
    r.train()
    r(torch.rand(4, 1, 28, 28))  # moves running stats and num_batches_tracked
    save_compact(r, tmp_path / "r.tslim", fp16=False)
    r2 = load_compact(tmp_path / "r.tslim")
    assert_same_state(r, r2)
    nbt = [k for k in r2.state_dict() if k.endswith("num_batches_tracked")]
    assert nbt and int(r2.state_dict()[nbt[0]]) == 1


def test_torch_prune_masks_made_permanent_and_fp16(tmp_path):
    from torch.nn.utils import prune

    m = build_model("lenet300", dataset="mnist")
    prune.l1_unstructured(m.fc1, "weight", amount=0.9)
    save_compact(m, tmp_path / "m.tslim")
    m2 = torchslim.load(tmp_path / "m.tslim")
    assert "fc1.weight_orig" not in m2.state_dict()
    assert torch.equal(m2.fc1.weight, m.fc1.weight.detach())
    stats = save_compact(m, tmp_path / "h.tslim", fp16=True)
    assert stats["tensors"]["fc2.weight"]["dtype"] == "float16"
    h = torchslim.load(tmp_path / "h.tslim")
    assert h.fc2.weight.dtype == torch.float32
    assert torch.equal(h.fc2.weight, m.fc2.weight.detach().half().float())


def test_eval_cli_reads_the_compact_artifact(tmp_path, capsys, digits):
    from torchslim.analysis.evaluate import evaluate
    from torchslim.cli import eval as eval_verb

    m = prune_cluster_(build_model("lenet300", dataset="digits"), density=0.5, k=8)
    path = tmp_path / "m.tslim"
    save_compact(m, path)
    parser = argparse.ArgumentParser()
    eval_verb.add_parser(parser.add_subparsers())
    assert eval_verb.run(parser.parse_args(["eval", str(path), "--dataset", "digits", "--json"])) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy"] == evaluate(m.eval(), digits[1])["accuracy"]


def test_load_imports_the_codec_lazily(tmp_path):
    save_compact(build_model("lenet300", dataset="digits"), tmp_path / "m.tslim")
    code = ("import sys; from torchslim.artifact import load; assert 'torchslim.codec' not in sys.modules; "
            f"m = load({str(tmp_path / 'm.tslim')!r}); print(type(m).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "LeNet300"


def test_encode_config_round_trip_and_stage(tmp_path):
    cls = config_class("codec.encode")
    assert cls is EncodeConfig
    cfg = EncodeConfig(index_bits=5, huffman=True, filename="final.tslim")
    assert EncodeConfig.from_dict(cfg.to_dict()) == cfg
    assert EncodeConfig.from_yaml(cfg.to_yaml()) == cfg
    for bad in (dict(index_bits=0), dict(index_bits=13), dict(filename="a/b.tslim"), dict(huffman="yes")):
        with pytest.raises(ConfigError):
            EncodeConfig(**bad)
    with pytest.raises(ConfigError, match="allowed"):
        EncodeConfig.from_dict({"bits": 3})
    m = prune_cluster_(build_model("lenet300", dataset="digits"))
    ctx = Context(out_dir=tmp_path, stage_out=tmp_path / "encode")
    res = apply_stage(m, cfg, ctx)
    assert res.model is m
    path = Path(res.artifact)
    assert path == tmp_path / "encode" / "final.tslim" and path.exists()
    assert res.records["codec"]["file_bytes"] == path.stat().st_size
    layers = {r["tensor"]: r for r in res.records["codec_layers"]}
    assert layers["fc1.weight"]["index_bits_huffman"] >= layers["fc1.weight"]["index_entropy"] > 0
    assert_same_state(m, torchslim.load(path))
    with pytest.raises(ConfigError, match="output folder"):
        apply(m, cfg, Context())


def test_stats_rows_match_columns(tmp_path):
    from torchslim.codec import STATS_COLUMNS, stats_rows

    stats = save_compact(prune_cluster_(build_model("lenet300", dataset="digits")), tmp_path / "m.tslim")
    rows = stats_rows(stats)
    assert len(rows) == len(stats["tensors"]) and all(len(r) == len(STATS_COLUMNS) for r in rows)
    fc1 = next(r for r in rows if r[0] == "fc1.weight")
    h_idx, h_w = fc1[STATS_COLUMNS.index("idx H")], fc1[STATS_COLUMNS.index("w H")]
    assert fc1[STATS_COLUMNS.index("idx huff")] >= h_idx and fc1[STATS_COLUMNS.index("w huff")] >= h_w


def test_encode_cli(tmp_path, capsys):
    from torchslim.artifact import save
    from torchslim.cli import encode as encode_verb

    m = prune_cluster_(build_model("lenet300", dataset="digits"))
    save(m, tmp_path / "m.safetensors")
    parser = argparse.ArgumentParser()
    encode_verb.add_parser(parser.add_subparsers())
    args = parser.parse_args(["encode", str(tmp_path / "m.safetensors"), str(tmp_path / "m.tslim"),
                              "--index-bits", "5", "--json"])
    assert encode_verb.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["file_bytes"] == (tmp_path / "m.tslim").stat().st_size
    assert out["tensors"]["fc1.weight"]["index_bits"] == 5
    assert_same_state(m, torchslim.load(tmp_path / "m.tslim"))


def test_negative_zeros_from_mask_multiplication(tmp_path):
    m = prune_cluster_(build_model("lenet300", dataset="digits"))
    with torch.no_grad():
        m.fc1.weight.copy_(m.fc1.weight * (m.fc1.weight != 0) * torch.where(torch.rand_like(m.fc1.weight) < 0.5, -1.0, 1.0))
    w = m.fc1.weight.detach()
    assert torch.signbit(w[w == 0]).any()  # -0.0 present, as mask products leave them
    plain = save_compact(m, tmp_path / "a.tslim")
    exact = save_compact(m, tmp_path / "b.tslim", signed_zeros=True)
    assert plain["tensors"]["fc1.weight"]["nonzero"] == int((w != 0).sum())
    assert plain["file_bytes"] < exact["file_bytes"]
    a, b = torchslim.load(tmp_path / "a.tslim"), torchslim.load(tmp_path / "b.tslim")
    assert torch.equal(a.fc1.weight, w) and not torch.signbit(a.fc1.weight[a.fc1.weight == 0]).any()
    assert_same_state(m, b)  # bit for bit, signs of zeros included
