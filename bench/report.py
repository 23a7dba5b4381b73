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
