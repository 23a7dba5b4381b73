"""The one table every benchmark prints: measure, value, baseline, ratio, target."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    measure: str
    value: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""


def print_table(rows: list[Row], markdown: bool) -> None:
    """Aligned columns for a terminal, or a Markdown table for the docs."""
    head = ("measure", "value", "baseline / detail", "ratio", "target")
    cells = [head, *[(r.measure, r.value, r.baseline, r.ratio, r.target) for r in rows]]
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for c in cells[1:]:
            print("| " + " | ".join(c) + " |")
        return
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())


def print_columns(head: list[str], rows: list[list[str]], markdown: bool) -> None:
    """A table with its own columns (one row per scenario): right-aligned for a terminal, or
    Markdown for the docs."""
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
