"""The lines the hub tells its operator: HubEvent (a status change, alert, ack, object,
clip answer or malformed message, as one line of log), the hook that is handed each one,
and cut(), which bounds any text from the network before it goes into a line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

TEXT_LIMIT = 300  # topics and error texts from the network are cut to this many characters


@dataclass(frozen=True)
class HubEvent:
    """Something the operator may want to see as a line: status change, alert, ack, garbage."""

    at: datetime
    kind: str
    text: str
    node: str = ""
    alert_id: str = ""


EventHook = Callable[[HubEvent], None]


def cut(text: str) -> str:
    """text, cut to TEXT_LIMIT characters (the last one an ellipsis) if longer."""
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"
