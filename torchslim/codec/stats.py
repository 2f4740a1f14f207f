"""Per-tensor coding statistics: bits per weight (codebook index or raw value)
and per sparse index, before Huffman (fixed width) and after, next to the
empirical entropy bound; plus a table for reports."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["tensor_stats", "stats_rows", "stats_records", "STATS_COLUMNS"]


def _binary_entropy(p: float) -> float:
    if p <= 0 or p >= 1:
        return 0.0
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def tensor_stats(t, pat: np.ndarray, plan, width: int) -> dict:
    from .tensorcodec import LAYOUTS, VALUE_KINDS

    numel = int(pat.size)
    nnz = int(np.count_nonzero(pat))
    vp = plan.values
    out = {
        "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "numel": numel, "nonzero": nnz,
        "bytes": plan.nbytes, "layout": LAYOUTS[plan.layout], "values": VALUE_KINDS[vp.kind],
        "entries": plan.entries, "fillers": plan.fillers,
        "index_bits": plan.bits if plan.layout == 2 else None,
        "codebook_size": (vp.codebook.size if vp.codebook is not None
                          else int(vp.levels.size) if vp.levels is not None else None),
        "bits_per_element": plan.nbytes * 8 / numel if numel else 0.0,
        "bits_per_nonzero": plan.nbytes * 8 / nnz if nnz else None,
    }
    # weights: one symbol per stored entry
    if vp.stream is not None:
        s = vp.stream.summary()
        out["weight"] = {"coding": s["coding"], "fixed_bits": s["fixed_bits"], "huffman_bits": s["huffman_bits"],
                         "entropy_bits": s["entropy_bits"], "coded_bits": s["coded_bits"]}
    else:
        raw_bits = float(width * 8)
        out["weight"] = {"coding": "raw", "fixed_bits": raw_bits, "huffman_bits": None, "entropy_bits": None,
                         "coded_bits": raw_bits}
    # indices: per stored entry (relative) or per non-zero (bitmap)
    if plan.layout == 2:
        s = plan.index.summary()
        out["index"] = {"coding": s["coding"], "fixed_bits": s["fixed_bits"], "huffman_bits": s["huffman_bits"],
                        "entropy_bits": s["entropy_bits"], "coded_bits": s["coded_bits"]}
    elif plan.layout == 1:
        per = numel / nnz if nnz else 0.0
        h = _binary_entropy(nnz / numel) * numel / nnz if nnz else 0.0
        out["index"] = {"coding": "bitmap", "fixed_bits": per, "huffman_bits": None, "entropy_bits": h,
                        "coded_bits": per}
    else:
        out["index"] = None
    return out


STATS_COLUMNS = ["tensor", "shape", "nonzero", "layout", "idx bits", "idx fixed", "idx huff", "idx H",
                 "K", "w fixed", "w huff", "w H", "bytes", "bits/nz"]


def stats_rows(stats: dict) -> list[list]:
    """Rows (``STATS_COLUMNS``) for a table of ``save_compact``'s stats."""
    rows = []
    for name, s in stats["tensors"].items():
        idx, w = s["index"] or {}, s["weight"]
        rows.append([name, "x".join(map(str, s["shape"])) or "scalar", s["nonzero"], s["layout"], s["index_bits"],
                     idx.get("fixed_bits"), idx.get("huffman_bits"), idx.get("entropy_bits"), s["codebook_size"],
                     w["fixed_bits"], w["huffman_bits"], w["entropy_bits"], s["bytes"], s["bits_per_nonzero"]])
    return rows


def stats_records(stats: dict) -> list[dict]:
    """One flat mapping per tensor (``STATS_COLUMNS`` as keys, snake-cased),
    the shape report tables take."""
    keys = ["tensor", "shape", "nonzero", "layout", "index_bits", "index_bits_fixed", "index_bits_huffman",
            "index_entropy", "codebook", "weight_bits_fixed", "weight_bits_huffman", "weight_entropy", "bytes",
            "bits_per_nonzero"]
    return [dict(zip(keys, row)) for row in stats_rows(stats)]
