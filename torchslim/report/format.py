"""How a number is shown, the same in the terminal tables, the HTML report
and the CLI: None as "-", floats to 4 decimals (or 3 significant digits when
tiny or huge), ints with thousands separators."""
from __future__ import annotations

from typing import Any

__all__ = ["fmt"]


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3g}"
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)
