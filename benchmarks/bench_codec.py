"""The compact codec on LeNet-300-100 (266,610 parameters, 1,066,440 dense
fp32 bytes):

1. synthetic: every parameter tensor 92% zeros at random positions, the rest
   drawn from a 32-value codebook (uniformly: the hardest case for Huffman);
2. trained: the cached dense baseline, magnitude-pruned per layer to 8% and
   clustered to 32 shared values per layer by 1-D k-means (no fine-tuning;
   test accuracy shown to make the point that the artifact decodes to the
   same model, not as a Deep Compression result, which is helper R's recipe).

For each: file bytes and ratio of the chosen encoding, of the paper's fixed
format (5-bit relative indices + 5-bit codebook indices, no Huffman), of the
foundation's safetensors artifact (bitmap sparse) and of lzma over the raw
tensors; per-layer bits per weight and per index before/after Huffman next to
the entropy bound; encode and decode times (median of 5, 1 thread).

    python -m benchmarks.run_all codec
"""
from __future__ import annotations

import lzma
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import baseline, baseline_path, write_result
from torchslim.artifact import save
from torchslim.artifact.format import permanent_state
from torchslim.codec import load_compact, save_compact
from torchslim.zoo import build_model, load_dataset


def synthetic(seed: int = 0):
    m = build_model("lenet300", dataset="mnist")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            cb = torch.randn(32, generator=g) * 0.05
            keep = torch.rand(p.shape, generator=g) < 0.08
            p.copy_(torch.where(keep, cb[torch.randint(0, 32, p.shape, generator=g)], torch.zeros(())))
    return m


def kmeans_1d(x: np.ndarray, k: int, iters: int = 30) -> np.ndarray:
    """Linear-initialised 1-D k-means (Deep Compression's initialisation)."""
    c = np.linspace(x.min(), x.max(), k)
    for _ in range(iters):
        a = np.abs(x[:, None] - c[None, :]).argmin(1)
        for j in range(k):
            if (a == j).any():
                c[j] = x[a == j].mean()
    return c.astype(np.float32)[np.abs(x[:, None] - c[None, :]).argmin(1)]


def pruned_clustered_baseline():
    m, _ = baseline("lenet300")
    with torch.no_grad():
        for name, p in m.named_parameters():
            if not name.endswith("weight"):
                continue
            w = p.detach().numpy().reshape(-1).copy()
            k = max(1, int(round(0.08 * w.size)))
            thr = np.sort(np.abs(w))[-k]
            nz = np.abs(w) >= thr
            w[~nz] = 0
            w[nz] = kmeans_1d(w[nz], 32)
            p.copy_(torch.from_numpy(w.reshape(p.shape)))
    return m


def _median_time(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, model, folder: Path) -> dict:
    path = folder / f"{name}.tslim"
    stats = save_compact(model, path)
    enc = _median_time(lambda: save_compact(model, path))
    dec = _median_time(lambda: load_compact(path))
    back = load_compact(path)
    exact = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    paper = save_compact(model, folder / f"{name}-paper.tslim", index_bits=5, huffman=False)
    st = save(model, folder / f"{name}.safetensors")
    raw = b"".join(t.contiguous().numpy().tobytes() for t in permanent_state(model).values())
    dense = stats["dense_fp32_bytes"]
    out = {
        "file_bytes": stats["file_bytes"], "ratio": stats["compression_ratio"], "header_bytes": stats["header_bytes"],
        "bit_exact": exact, "encode_s": enc, "decode_s": dec, "threads": torch.get_num_threads(),
        "paper_format_bytes": paper["file_bytes"], "paper_format_ratio": dense / paper["file_bytes"],
        "safetensors_bytes": st.stat().st_size, "safetensors_ratio": dense / st.stat().st_size,
        "lzma_bytes": len(lzma.compress(raw, preset=9)), "dense_fp32_bytes": dense, "tensors": stats["tensors"],
    }
    out["lzma_ratio"] = dense / out["lzma_bytes"]
    return out


def _print(name: str, r: dict) -> None:
    print(f"\n[{name}] {r['file_bytes']:,} bytes, {r['ratio']:.1f}x (header+section overhead {r['header_bytes']} B), "
          f"bit-exact={r['bit_exact']}, encode {r['encode_s'] * 1e3:.0f} ms, decode {r['decode_s'] * 1e3:.0f} ms "
          f"(median of 5, {r['threads']} thread)")
    print(f"  paper format (5-bit idx + 5-bit codes, no Huffman): {r['paper_format_bytes']:,} B "
          f"{r['paper_format_ratio']:.1f}x | safetensors bitmap: {r['safetensors_bytes']:,} B "
          f"{r['safetensors_ratio']:.1f}x | lzma raw: {r['lzma_bytes']:,} B {r['lzma_ratio']:.1f}x")
    print(f"  {'tensor':<11}{'nnz':>7} {'layout':<9}{'b':>3}{'idx fix':>8}{'huff':>6}{'H':>6}"
          f"{'K':>4}{'w fix':>6}{'huff':>6}{'H':>6}{'bytes':>7}{'b/nz':>6}")
    for tname, s in r["tensors"].items():
        idx, w = s["index"] or {}, s["weight"]
        f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"  {tname:<11}{s['nonzero']:>7} {s['layout']:<9}{s['index_bits'] or '-':>3}"
              f"{f(idx.get('fixed_bits')):>8}{f(idx.get('huffman_bits')):>6}{f(idx.get('entropy_bits')):>6}"
              f"{s['codebook_size'] or '-':>4}{f(w['fixed_bits']):>6}{f(w['huffman_bits']):>6}{f(w['entropy_bits']):>6}"
              f"{s['bytes']:>7}{f(s['bits_per_nonzero']):>6}")


def main() -> None:
    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        results["synthetic"] = measure("synthetic", synthetic(), folder)
        _print("synthetic: 92% zeros, 32 uniform codebook values", results["synthetic"])
        if not baseline_path("lenet300").exists() and not os.environ.get("CODEC_TRAIN_BASELINE"):
            print("\n[trained] skipped: the lenet300 baseline is not cached yet (run `make bench BENCH=foundation` "
                  "first, or set CODEC_TRAIN_BASELINE=1 to train it here)")
            print(f"\nwritten {write_result('codec', results)}")
            return
        m = pruned_clustered_baseline()
        from torchslim.analysis.evaluate import evaluate

        r = measure("trained", m, folder)
        r["test_accuracy_no_finetune"] = evaluate(m.eval(), load_dataset("mnist", "test"))["accuracy"]
        results["trained"] = r
        _print("trained baseline, 8% magnitude-pruned, 32-means per layer, no fine-tuning", r)
        print(f"  test accuracy (artifact decodes to the same weights, no fine-tuning): {r['test_accuracy_no_finetune']:.4f}")
    print(f"\nwritten {write_result('codec', results)}")


if __name__ == "__main__":
    main()
