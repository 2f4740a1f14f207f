"""torchslim export MODEL --format onnx [--int8 static|dynamic] [--dataset D] [--smooth A] --out FILE

Writes an ONNX model (float, static int8 QDQ or dynamic int8) and checks it
once in ONNX Runtime against the PyTorch model. MODEL is a zoo name or an
artifact (a model quantized by `torchslim quantize` is exported with its own
scales). Calibration, when needed, uses a holdout of the train split of D, or
the offline sentence corpus for `minilm`."""
from __future__ import annotations


def add_parser(sub):
    from .common import NONNEGATIVE_INT, POSITIVE_INT, bounded

    p = sub.add_parser("export", help="export a model to ONNX (float, static or dynamic int8)")
    p.add_argument("model", help="zoo name or artifact path")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--int8", default=None, choices=["static", "dynamic"])
    p.add_argument("--dataset", default=None,
                   help="data set for input shape and calibration (default: the one the artifact records; mnist for "
                        "a zoo name; not for minilm)")
    p.add_argument("--calib", type=POSITIVE_INT, default=512, help="calibration samples (images or sentences)")
    p.add_argument("--keep-float", type=NONNEGATIVE_INT, default=0,
                   help="dynamic: leave this many most sensitive Linear layers in float (chosen on calibration data)")
    p.add_argument("--smooth", type=bounded(float, 0, 1), default=None,
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
    from ..core.errors import ConfigError
    from ..zoo.models import model_names
    from ..zoo.text import sentences
    from ..zoo.user_data import check_inputs_fit, expected_inputs
    from .common import check_out, load_model, print_json, print_table

    if args.smooth is not None and args.int8 != "dynamic":
        raise ConfigError("--smooth applies to --int8 dynamic only; add --int8 dynamic or drop --smooth")
    check_out(args.out)
    text = args.model == "minilm"
    dataset = args.dataset
    if dataset is None and not text and args.model in model_names():
        dataset = "mnist"  # a zoo name is built for mnist unless told otherwise
    model = load_model(args.model, dataset=None if text else dataset).eval()
    text = text or is_text_model(model)
    if dataset is None and not text:  # an artifact: the data set it was made on
        dataset = (getattr(model, "torchslim_metadata", None) or {}).get("dataset")
    if text:
        inputs = token_batch(sentences(4, split="eval"))
    else:
        inputs = example_inputs(model, dataset, batch=2)
    needs_calib = ((args.int8 == "static" and not is_fake_quantized(model)) or args.keep_float > 0
                   or args.smooth is not None)
    calib = None
    if needs_calib and text:
        calib = text_calibration(args.calib)
    elif needs_calib:
        if dataset is None:
            raise ConfigError(f"--dataset: {args.model} records no data set to calibrate on (--int8 "
                              f"{args.int8 or 'dynamic'}); give --dataset D, the data the model takes "
                              f"({expected_inputs(model)})")
        calib = image_calibration(dataset, args.calib)
        if not calib:
            raise ConfigError(f"--dataset {dataset}: its training split is empty, nothing to calibrate on")
        check_inputs_fit(model, (calib[0][:2],), where=f"--dataset {dataset}",
                         fix="calibrate on the data set the model was trained on (--dataset)")
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
