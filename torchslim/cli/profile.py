"""torchslim profile MODEL [--dataset D] [--input-shape 1,1,28,28] [--batch N] [--latency] [--json]"""
from __future__ import annotations

from pathlib import Path


def add_parser(sub):
    from .common import POSITIVE_INT

    p = sub.add_parser("profile", help="params, non-zeros, MACs/FLOPs per layer, bytes, and optionally latency")
    p.add_argument("model", help="zoo model name, artifact path, Hugging Face folder or pkg.module:factory")
    p.add_argument("--dataset", default=None, help="data set whose input shape a zoo model is built for (default: mnist)")
    p.add_argument("--input-shape", default=None,
                   help="input shape including the batch, e.g. 1,1,28,28; for models with their own example_inputs "
                        "(minilm) and Hugging Face text models the numbers are batch,seq_len")
    p.add_argument("--batch", type=POSITIVE_INT, default=None,
                   help="batch size (overrides the first number of --input-shape)")
    p.add_argument("--latency", action="store_true", help="also time the model (median/p90 over repeated runs)")
    p.add_argument("--repeats", type=POSITIVE_INT, default=50, help="timed runs for --latency")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return p


def _parse_shape(text: str) -> list[int]:
    from ..core.errors import ConfigError

    try:
        shape = [int(s) for s in text.replace("x", ",").split(",") if s.strip()]
    except ValueError:
        shape = []
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(f"--input-shape {text!r} is not a list of positive integers such as 1,1,28,28")
    return shape


def example_inputs_for(model, *, dataset: str | None, input_shape: str | None, batch: int | None) -> tuple:
    import torch

    from ..zoo import example_inputs

    torch.manual_seed(0)
    shape = _parse_shape(input_shape) if input_shape else None
    if shape and batch:
        shape[0] = batch
    if hasattr(model, "example_inputs"):
        if shape:
            return tuple(model.example_inputs(*shape))
        return tuple(model.example_inputs(batch or 1))
    if "hf" in (getattr(model, "torchslim_arch", None) or {}) and getattr(model, "main_input_name", "") == "input_ids":
        from ..zoo.sources import hf_example_inputs

        return hf_example_inputs(model, *(shape[:2] if shape else [batch or 1]))  # batch,seq_len
    if shape:
        return (torch.rand(*shape),)
    return example_inputs(model, dataset or "mnist", batch=batch or 1)


def run(args) -> int:
    from ..analysis.latency import latency
    from ..analysis.profile import format_count, profile
    from .common import load_model, print_json

    model = load_model(args.model, dataset=args.dataset)
    inputs = example_inputs_for(model, dataset=args.dataset, input_shape=args.input_shape, batch=args.batch)
    if args.input_shape:  # the user's shape: checked here so the message names it, the expected and given shapes
        from ..core.errors import ConfigError
        from ..zoo.user_data import check_inputs_fit

        check_inputs_fit(model, inputs, where=f"--input-shape {args.input_shape}", error=ConfigError,
                         fix="give --input-shape as batch,<that shape>, or leave it out")
    artifact = Path(args.model) if Path(args.model).is_file() else None
    prof = profile(model, inputs, artifact_path=artifact)
    out = {"model": args.model, **prof.to_dict()}
    if args.latency:
        out["latency"] = latency(model, inputs, repeats=args.repeats)
    if args.json:
        print_json(out)
        return 0

    rows = []
    for lp in prof.layers:
        note = ("UNCOUNTED: " + "; ".join(lp.uncounted_ops)) if lp.uncounted else ("not called" if not lp.calls else "")
        rows.append([lp.name or "<model>", lp.type, lp.params, lp.nonzero, format_count(lp.macs),
                     format_count(lp.flops), "x".join(map(str, lp.output_shape)) if lp.output_shape else "-", note])
    shapes = ", ".join("x".join(map(str, s)) for s in prof.input_shapes)
    _table(f"{args.model}: per layer (input {shapes})",
           ["layer", "type", "params", "nonzero", "MACs", "FLOPs", "output", "note"], rows)
    totals = [["params", prof.params], ["nonzero params", prof.nonzero_params],
              ["sparsity", round(prof.sparsity, 4)], ["MACs (conv/linear/attention)", prof.macs],
              ["FLOPs (all counted work)", prof.flops], ["fp32 bytes", prof.fp32_bytes],
              ["artifact bytes on disk", prof.size_bytes],
              ["uncounted layers", ", ".join(prof.uncounted) if prof.uncounted else "none"]]
    if args.latency:
        lat = out["latency"]
        totals += [["latency median ms", lat["median_ms"]], ["latency p90 ms", lat["p90_ms"]],
                   ["throughput samples/s", lat["throughput"]],
                   ["latency batch / threads", f"{lat['batch_size']} / {lat['threads']}"]]
    _table(f"{args.model}: totals", ["metric", "value"], totals)
    return 0


def _table(title: str, columns: list[str], rows: list[list]) -> None:
    """A rich table that is not squeezed to 80 columns when printed to a pipe or file."""
    from rich.console import Console
    from rich.table import Table

    from .common import fmt

    t = Table(title=title)
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i in (0, 1) or c == "note" else "right", overflow="fold")
    for r in rows:
        t.add_row(*[fmt(v) for v in r])
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(t)
