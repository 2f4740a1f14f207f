"""torchslim bench MODEL_OR_ONNX [--batch N] [--seq L] [--threads T] [--against OTHER] [--json]

Latency of a PyTorch model (zoo name or artifact) or of an ONNX file in ONNX
Runtime (``OrtModel``: T intra-op threads, graph optimisations on), median of
repeated runs after warm-up. With ``--against OTHER`` both are timed
alternately in this process and the median of per-pair ratios is reported
(OTHER / MODEL: above 1 means MODEL is faster)."""
from __future__ import annotations


def add_parser(sub):
    from .common import NONNEGATIVE_INT, POSITIVE_INT, bounded

    p = sub.add_parser("bench", help="measure latency in PyTorch or ONNX Runtime")
    p.add_argument("model", help="zoo name, artifact, or .onnx file")
    p.add_argument("--against", default=None, help="a second model or .onnx file, timed alternately with the first")
    p.add_argument("--batch", type=POSITIVE_INT, default=1)
    p.add_argument("--seq", type=bounded(int, 3), default=128, help="sequence length (token models)")
    p.add_argument("--threads", type=POSITIVE_INT, default=1, help="threads for PyTorch and ONNX Runtime")
    p.add_argument("--dataset", default="mnist", help="input shape of image models")
    p.add_argument("--repeats", type=POSITIVE_INT, default=20)
    p.add_argument("--warmup", type=NONNEGATIVE_INT, default=3)
    p.add_argument("--json", action="store_true")
    return p


def _load(spec: str, args):
    from ..export.inputs import is_text_model
    from ..export.runtime import OrtModel
    from .common import load_model

    if spec.endswith(".onnx"):
        m = OrtModel(spec, threads=args.threads)
        text = any(i.type == "tensor(int64)" for i in m.inputs)
        return m, text, f"onnxruntime ({args.threads} threads)"
    model = load_model(spec, dataset=None if spec == "minilm" else args.dataset).eval()
    return model, is_text_model(model), f"torch ({args.threads} threads)"


def _inputs(model, text: bool, args):
    import torch

    from ..export.inputs import full_token_batch
    from ..export.runtime import OrtModel
    from ..zoo import dataset_info

    if text:
        return full_token_batch(args.batch, args.seq)
    if isinstance(model, OrtModel):
        dims = model.inputs[0].shape
        if all(isinstance(d, int) for d in dims[1:]):
            return (torch.rand(args.batch, *dims[1:]),)
        return (torch.rand(args.batch, *dataset_info(args.dataset).input_shape),)
    from ..zoo import example_inputs

    return example_inputs(model, args.dataset, batch=args.batch)


def run(args) -> int:
    from ..analysis.latency import compare_latency, latency
    from .common import print_json, print_table

    a, text, runtime_a = _load(args.model, args)
    inputs = _inputs(a, text, args)
    if not text:  # an image model's input shape comes from the model, else from --dataset: check before timing
        from ..zoo.user_data import check_inputs_fit

        check_inputs_fit(a, inputs, where=f"--dataset {args.dataset}",
                         fix="give the data set the model was made for (--dataset)")
    out: dict = {"model": args.model, "runtime": runtime_a, "batch": args.batch, "threads": args.threads}
    if text:
        out["seq"] = args.seq
    if args.against is None:
        r = latency(a, inputs, warmup=args.warmup, repeats=args.repeats, threads=args.threads)
        out.update({k: r[k] for k in ("median_ms", "p90_ms", "min_ms", "throughput") if k in r})
    else:
        b, _, runtime_b = _load(args.against, args)
        r = compare_latency(b, a, inputs, threads=args.threads, repeats=args.repeats, warmup=args.warmup)
        out.update({"against": args.against, "against_runtime": runtime_b, "median_ms": r["b_median_ms"],
                    "against_median_ms": r["a_median_ms"], "speedup_vs_against": r["ratio_median"]})
    if args.json:
        print_json(out)
    else:
        print_table(f"bench {args.model}", ["field", "value"], [[k, v] for k, v in out.items()])
    return 0
