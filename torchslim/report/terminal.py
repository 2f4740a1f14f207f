"""Reports in the terminal (rich tables)."""
from __future__ import annotations

__all__ = ["print_report", "print_tables"]


def print_tables(tables, *, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    from .format import fmt

    if console is None:
        console = Console()
        if not console.is_terminal:  # a log file or a pipe: do not squeeze columns into 80 characters
            console = Console(width=180)
    for title, cols, rows in tables:
        t = Table(title=title)
        for i, c in enumerate(cols):
            t.add_column(str(c), justify="left" if i == 0 else "right")
        for r in rows:
            t.add_row(*[fmt(v) for v in r])
        console.print(t)


def print_report(report: dict, *, layers: bool = False, console=None) -> None:
    """The before/after summary and the stage table (and per-layer rows)."""
    from .tables import layers_table, stages_table, summary_table

    tables = [stages_table(report), summary_table(report)]
    if layers:
        tables.append(layers_table(report))
    print_tables(tables, console=console)
