"""torchslim export MODEL --format onnx [--int8 static|dynamic] [--dataset D] [--smooth A] --out FILE

Writes an ONNX model (float, static int8 QDQ or dynamic int8) and checks it
once in ONNX Runtime against the PyTorch model. MODEL is a zoo name or an
artifact (a model quantized by `torchslim quantize` is exported with its own
scales). Calibration, when needed, uses a holdout of the train split of D, or
the offline sentence corpus for `minilm`."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("export", help="export a model to ONNX (float, static or dynamic int8)")
    p.add_argument("model", help="zoo name or artifact path")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--int8", default=None, choices=["static", "dynamic"])
    p.add_argument("--dataset", default="mnist", help="data set for input shape and calibration (not for minilm)")
    p.add_argument("--calib", type=int, default=512, help="calibration samples (images or sentences)")
    p.add_argument("--keep-float", type=int, default=0,
                   help="dynamic: leave this many most sensitive Linear layers in float (chosen on calibration data)")
    p.add_argument("--smooth", type=float, default=None,
                   help="dynamic: SmoothQuant alpha (e.g. 0.7 for transformers), activation maxima from calibration data")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--json", action="store_true")
    return p


def run(args) -> int:
    import json

    import onnx
    import torch

    from ..export.exporter import is_fake_quantized, to_onnx
    from ..export.inputs import image_calibration, is_text_model, text_calibration, token_batch
    from ..export.runtime import OrtModel
    from ..zoo import example_inputs
    from ..zoo.text import sentences
    from .common import load_model, print_json, print_table

    if args.smooth is not None and args.int8 != "dynamic":
        from ..core.errors import ConfigError

        raise ConfigError("--smooth applies to --int8 dynamic only")
    text = args.model == "minilm"
    model = load_model(args.model, dataset=None if text else args.dataset).eval()
    text = text or is_text_model(model)
    if text:
        inputs = token_batch(sentences(4, split="eval"))
    else:
        inputs = example_inputs(model, args.dataset, batch=2)
    needs_calib = ((args.int8 == "static" and not is_fake_quantized(model)) or args.keep_float > 0
                   or args.smooth is not None)
    calib = None
    if needs_calib:
        calib = text_calibration(args.calib) if text else image_calibration(args.dataset, args.calib)
    path = to_onnx(model, args.out, inputs, int8=args.int8, calib=calib, keep_float=args.keep_float,
                   smooth=args.smooth)
    session = OrtModel(path, threads=1)
    check = session(*inputs)
    with torch.no_grad():
        ref = model(*inputs)
    meta = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    out = {
        "model": args.model, "file": str(path), "size_bytes": path.stat().st_size, "int8": args.int8 or "none",
        "inputs": session.input_names, "quantized_layers": len(json.loads(meta.get("torchslim.quantized_layers", "[]"))),
        "float_layers": json.loads(meta.get("torchslim.float_layers", "[]")),
        "max_abs_diff_vs_torch": float((check - ref).abs().max()),
    }
    if args.json:
        print_json(out)
    else:
        print_table(f"export {args.model} -> {path}", ["field", "value"], [[k, v] for k, v in out.items()])
    return 0
