"""torchslim encode MODEL OUT [--index-bits N] [--no-huffman] [--fp16] [--json]:
write the compact (entropy-coded) artifact of a saved model and print, per
layer, the bits per weight and per index before and after Huffman coding next
to the entropy bound."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("encode", help="write the compact entropy-coded artifact (.tslim) of a model")
    p.add_argument("model", help="artifact path (or zoo name)")
    p.add_argument("out", help="output file, e.g. model.tslim")
    p.add_argument("--dataset", default=None, help="data set a zoo model is built for")
    p.add_argument("--index-bits", type=int, default=None,
                   help="fixed relative sparse-index width 1..12 (default: best per tensor)")
    p.add_argument("--no-huffman", action="store_true", help="fixed-width codes only")
    p.add_argument("--fp16", action="store_true", help="store float32 tensors as float16 (lossy)")
    p.add_argument("--json", action="store_true")
    return p


def run(args) -> int:
    from ..codec.compact import save_compact
    from ..codec.configs import EncodeConfig
    from ..codec.stats import STATS_COLUMNS, stats_rows
    from ..codec.tensorcodec import MAX_INDEX_BITS
    from ..core.errors import ConfigError
    from .common import check_out, load_model, print_json, print_table

    if args.index_bits is not None and not 1 <= args.index_bits <= MAX_INDEX_BITS:
        raise ConfigError(f"--index-bits {args.index_bits}: outside 1..{MAX_INDEX_BITS}; give a width in that range "
                          "or leave it out to choose the best per tensor")
    EncodeConfig(index_bits=args.index_bits)  # the config's own checks
    check_out(args.out, flag="OUT", example="model.tslim")
    model = load_model(args.model, dataset=args.dataset)
    stats = save_compact(model, args.out, index_bits=args.index_bits, huffman=not args.no_huffman, fp16=args.fp16)
    if args.json:
        print_json(stats)
        return 0
    print_table(f"{args.out}: {stats['file_bytes']:,} bytes, {stats['compression_ratio']:.1f}x vs dense fp32 "
                "(bits: fixed = before Huffman, huff = after, H = entropy bound)", STATS_COLUMNS, stats_rows(stats))
    return 0
