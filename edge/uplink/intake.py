"""Where the hub's commands wait between the uplink's network thread and the command desk.

The network thread also carries the alerts' PUBACKs, the hub's acks and the keepalive, so it
must never spend a flood's worth of time on commands: it only counts a command and appends it
to a short queue, within a per-second budget. One intake thread takes them from there and
the desk checks and answers them. A command beyond the budget or the queue is refused:
counted (`commands_busy`), answered `busy` while the busy budget lasts (`commands_dropped`
once that is spent too, with no answer: an answer per message would let a flood double
itself), and logged once per interval. What a flood leaves behind is bounded by the queue.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from drivers.lifecycle import Lifecycle
from edge.budget import Budget, QuietLog
from edge.config.model import CommandsSection
from edge.counters import Counters
from edge.uplink.client import ReplyTo

log = logging.getLogger(__name__)

# (topic, payload, where the answer goes)
Receive = Callable[[str, bytes, ReplyTo], None]


class CommandIntake(Lifecycle):
    def __init__(self, section: CommandsSection, check: Receive, busy: Receive,
                 counters: Counters) -> None:
        super().__init__()
        self._check, self._busy, self.counters = check, busy, counters
        self._queue: deque[tuple[str, bytes, ReplyTo]] = deque()
        self._size = section.queue
        self._budget = Budget(section.rate_per_s, section.burst)
        self._busy_budget = Budget(section.busy_answers_per_s, section.busy_answers_per_s)
        self._ready = threading.Condition()
        self._quiet = QuietLog(log)

    def start(self) -> None:
        self._start_thread(self._run, "command-intake")

    def queued(self) -> int:
        with self._ready:
            return len(self._queue)

    # --- network thread: O(1), never blocks on anything but a short lock ---

    def on_message(self, topic: str, payload: bytes, reply: ReplyTo) -> None:
        self.counters.inc("commands")
        with self._ready:
            taken = len(self._queue) < self._size and self._budget.take()
            if taken:
                self._queue.append((topic, payload, reply))
                self._ready.notify()
        if not taken:
            self._refuse(topic, payload, reply)

    def _refuse(self, topic: str, payload: bytes, reply: ReplyTo) -> None:
        self.counters.inc("commands_busy")
        self._quiet.warning("busy", "commands arrive faster than %.0f a second (or %d are "
                            "waiting): refusing the excess", self._budget.rate_per_s,
                            self._size)
        if self._busy_budget.take():
            self._busy(topic, payload, reply)
        else:
            self.counters.inc("commands_dropped")

    # --- intake thread ---

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stopping.is_set():
                    self._ready.wait(1.0)
                if self._stopping.is_set():
                    return
                topic, payload, reply = self._queue.popleft()
            try:
                self._check(topic, payload, reply)
            except Exception:  # a bug in one command must not stop the others
                log.exception("checking a command on %s failed", topic)

    def _interrupt(self) -> None:
        with self._ready:
            self._ready.notify_all()
