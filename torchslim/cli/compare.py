"""torchslim compare DIR1 DIR2 ...: runs side by side (terminal + HTML)."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("compare", help="compare several recipe runs side by side")
    p.add_argument("runs", nargs="+", help="run folders (each with a report.json)")
    p.add_argument("--html", default="compare.html", help="HTML file to write (default: compare.html)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    return p


def run(args) -> int:
    from pathlib import Path

    from ..artifact import atomic_write_bytes
    from ..report.html import render_compare_html
    from ..report.json_report import read_report
    from ..report.tables import compare_table
    from ..report.terminal import print_tables
    from .common import check_out, print_json

    check_out(args.html, flag="--html", example="compare.html")
    reports = {}
    for d in args.runs:
        label = Path(d).name or str(d)
        while label in reports:
            label += "'"
        reports[label] = read_report(d)
    atomic_write_bytes(Path(args.html), render_compare_html(reports).encode())
    title, cols, rows = compare_table(reports)
    if args.json:
        print_json({"columns": cols, "rows": rows, "html": args.html})
    else:
        print_tables([(title, cols, rows)])
        print(f"wrote {args.html}")
    return 0
