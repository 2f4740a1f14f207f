"""Pretrained MiniLM (all-MiniLM-L6-v2) in int8 on ONNX Runtime vs PyTorch fp32,
ONNX Runtime fp32, and ONNX Runtime's own ``quantize_dynamic`` (per-channel)
as the peer.

Latency: batch 32, sequence 128 (real corpus tokens, no padding), 2 threads
for PyTorch and ONNX Runtime; each ONNX model is timed alternately with the
PyTorch model in one process (``compare_latency``, median of per-pair ratios),
and torchslim's int8 alternately with the peer. Sizes: bytes of the files on
disk. Fidelity: cosine to the PyTorch fp32 embeddings of 1,024 sentences of
the corpus' *eval* split (mean and minimum) and nearest-neighbour agreement
(the most similar other sentence is the same as in fp32). Nearest-neighbour
agreement is a noisy figure (the corpus has near-duplicate docstring
sentences): at 256 sentences its standard error is about 1.6 points, hence
1,024. torchslim's int8 model
is per-channel dynamic int8 with SmoothQuant (alpha 0.7) on the widening
Linears, activation maxima taken from 64 sentences of the *calib* split; the
row ``torchslim_int8_nosmooth`` is the same export without smoothing.

The peer quantizes the same float ONNX file that is timed as "ORT fp32"; all
ONNX models run in the same ``OrtModel`` session settings.

    .venv/bin/python -m benchmarks.run_all minilm_int8
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import write_result

THREADS = 2
BATCH, SEQ = 32, 128
N_EVAL, N_CALIB = 1024, 64
REPEATS = 10
SMOOTH = 0.7  # SmoothQuant alpha; activation maxima from the calib sentences


def fidelity(emb: torch.Tensor, ref: torch.Tensor) -> dict:
    from torchslim.analysis.fidelity import fidelity as shared

    r = shared(emb, ref)
    return {"cos_mean": r["mean_cosine"], "cos_min": r["min_cosine"], "nn_agreement": r["nn_agreement"]}


def encode(fn, batches) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(*b) for b in batches])


def main(out_dir: str | None = None) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from torchslim.analysis.latency import compare_latency
    from torchslim.export import OrtModel, to_onnx
    from torchslim.export.inputs import full_token_batch, text_calibration, token_batch
    from torchslim.zoo import build_model
    from torchslim.zoo.text import sentences

    torch.set_num_threads(THREADS)
    out = Path(out_dir or tempfile.mkdtemp(prefix="bench_minilm_"))
    model = build_model("minilm").eval()
    latency_inputs = full_token_batch(BATCH, SEQ)
    example = token_batch(sentences(4, split="eval"))
    calib = text_calibration(N_CALIB, batch_size=32)
    eval_sents = sentences(N_EVAL, split="eval")
    eval_batches = [token_batch(eval_sents[i: i + 32]) for i in range(0, N_EVAL, 32)]

    files, timings = {}, {}
    t0 = time.perf_counter()
    files["ort_fp32"] = to_onnx(model, out / "minilm_fp32.onnx", example)
    timings["export_fp32_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    quantize_dynamic(str(files["ort_fp32"]), str(out / "minilm_peer_int8.onnx"), per_channel=True,
                     weight_type=QuantType.QInt8)
    files["peer_int8"] = out / "minilm_peer_int8.onnx"
    timings["peer_quantize_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    files["torchslim_int8"] = to_onnx(model, out / "minilm_torchslim_int8.onnx", example, int8="dynamic",
                                      smooth=SMOOTH, calib=calib)
    timings["torchslim_export_s"] = time.perf_counter() - t0
    files["torchslim_int8_nosmooth"] = to_onnx(model, out / "minilm_torchslim_int8_nosmooth.onnx", example,
                                               int8="dynamic")
    import json

    import onnx

    meta = {p.key: p.value for p in onnx.load(files["torchslim_int8"], load_external_data=False).metadata_props}
    float_layers = json.loads(meta["torchslim.float_layers"])
    smoothed = meta.get("torchslim.smooth_alpha")

    sessions = {k: OrtModel(p, threads=THREADS) for k, p in files.items()}
    ref = encode(model, eval_batches)
    rows = {"torch_fp32": {"size_bytes": None, **fidelity(ref, ref)}}
    for k, s in sessions.items():
        rows[k] = {"size_bytes": files[k].stat().st_size, **fidelity(encode(s, eval_batches), ref)}

    for k, s in sessions.items():
        r = compare_latency(model, s, latency_inputs, threads=THREADS, repeats=REPEATS, warmup=2)
        rows[k].update(latency_ms=r["b_median_ms"], torch_ms_in_pairs=r["a_median_ms"], speedup_vs_torch=r["ratio_median"])
        print(f"{k:20s} {r['b_median_ms']:8.1f} ms   torch {r['a_median_ms']:8.1f} ms   speedup {r['ratio_median']:.2f}x",
              flush=True)
    head = compare_latency(sessions["peer_int8"], sessions["torchslim_int8"], latency_inputs, threads=THREADS,
                           repeats=REPEATS, warmup=2)
    result = {
        "setup": {"batch": BATCH, "seq": SEQ, "threads": THREADS, "repeats_per_pair": REPEATS,
                  "eval_sentences": N_EVAL, "calib_sentences": N_CALIB, "machine": "shared 2-core VM",
                  "torchslim_float_layers": float_layers, "torchslim_smooth_alpha": smoothed},
        "models": rows,
        "torchslim_vs_peer": {"speedup": head["ratio_median"], "peer_ms": head["a_median_ms"],
                              "torchslim_ms": head["b_median_ms"]},
        "timings": timings,
    }
    print(f"{'model':20s} {'size MB':>8s} {'lat ms':>8s} {'x torch':>8s} {'cos mean':>9s} {'cos min':>8s} {'NN agr':>7s}")
    for k, r in rows.items():
        size = f"{r['size_bytes'] / 1e6:8.1f}" if r["size_bytes"] else f"{'-':>8s}"
        lat = f"{r.get('latency_ms', float('nan')):8.1f}"
        sp = f"{r.get('speedup_vs_torch', 1.0):8.2f}"
        print(f"{k:20s} {size} {lat} {sp} {r['cos_mean']:9.5f} {r['cos_min']:8.5f} {r['nn_agreement']:7.3f}")
    print(f"torchslim int8 vs peer (alternating): {head['ratio_median']:.2f}x "
          f"(peer {head['a_median_ms']:.1f} ms, torchslim {head['b_median_ms']:.1f} ms); float layers: {float_layers}")
    write_result("minilm_int8", result)
    return result


if __name__ == "__main__":
    main()
