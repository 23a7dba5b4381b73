"""The cells the console's tables share: printable(), the one gate every string from the
network goes through before it is drawn; times (hms) and ages as the console shows them;
num() for a figure a node has not reported yet; a node's health verdict as styled text.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text

from hub.nodes import NodeView
from hub.stats import duration


def printable(text: str, limit: int = 120) -> str:
    """Text made safe for a terminal: control characters shown as '?', cut to limit."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[: limit + 1])
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def hms(t: datetime) -> str:
    """t as UTC hours, minutes and seconds."""
    return t.astimezone(UTC).strftime("%H:%M:%S")


def age(then: datetime | None, now: datetime) -> str:
    """How long before now `then` was, e.g. '3m05s ago' ('never' for None)."""
    if then is None:
        return "never"
    return f"{duration((now - then).total_seconds())} ago"


def num(value: int | None) -> str:
    """A figure, or '-' if not reported."""
    return "-" if value is None else str(value)


HEALTH_STYLE = {"ok": "green", "degraded": "bold yellow", "failed": "bold red"}


def health_verdict(node: NodeView) -> Text:
    """The node's health verdict and its reasons, e.g. 'degraded: on battery (ups)'."""
    text = Text(printable(node.health, 10), style=HEALTH_STYLE.get(node.health, "bold red"))
    if node.reasons:
        text.append(": " + printable("; ".join(node.reasons), 200))
    return text
