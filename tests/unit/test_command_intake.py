"""The command intake under a flood, and the limits on what one command may be: the network
thread only queues, the queue and the answers stay bounded, and bad input is one answer and
at most a line in the log, never a traceback."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from edge.budget import Budget, QuietLog
from edge.config.model import CommandsSection
from edge.counters import Counters
from edge.uplink.client import ReplyTo
from edge.uplink.intake import CommandIntake
from tests.support.waiting import wait_for
from tests.unit.test_command_fuzz import TOPICS, make_desk, now_iso


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_budget_gives_its_burst_then_its_rate() -> None:
    now = FakeTime()
    budget = Budget(10.0, 5, now=now)
    assert [budget.take() for _ in range(7)] == [True] * 5 + [False] * 2
    now.t += 0.35  # 3.5 tokens
    assert [budget.take() for _ in range(4)] == [True] * 3 + [False]
    now.t += 100  # never more than the burst
    assert sum(budget.take() for _ in range(10)) == 5


def test_a_quiet_log_says_a_complaint_once_per_interval_with_the_count(
        caplog: pytest.LogCaptureFixture) -> None:
    now = FakeTime()
    quiet = QuietLog(logging.getLogger("test.quiet"), interval_s=10, now=now)
    with caplog.at_level(logging.WARNING, logger="test.quiet"):
        for i in range(1000):
            quiet.warning("junk", "junk number %d", i)
        now.t += 10
        quiet.warning("junk", "junk number %d", 1000)
        quiet.warning("other", "another kind")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["junk number 0",
                     "junk number 1000 (and 999 more like it since the last such line)",
                     "another kind"]


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def test_deeply_nested_json_is_rejected_with_a_reason_and_no_traceback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    desk, answers, _ = make_desk(tmp_path)
    bodies = [b"[" * 15_000, b"{\"a\":" * 2000 + b"1" + b"}" * 2000,
              json.dumps({"v": 1, "id": "deep-1", "issued": now_iso(),
                          "x": _nested(20)}).encode()]
    with caplog.at_level(logging.DEBUG):
        for body in bodies:
            desk.on_message(TOPICS.cmd("selftest"), body, ReplyTo())
    desk.close()
    assert [r.status for _, r, _ in answers.sent] == ["rejected"] * 3
    assert all("nested more than 16 deep" in r.error for _, r, _ in answers.sent)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_a_flood_is_queued_within_bounds_and_the_excess_refused_busy(tmp_path: Path) -> None:
    desk, answers, _ = make_desk(tmp_path)
    counters = Counters()
    section = CommandsSection(rate_per_s=50, burst=20, queue=10, busy_answers_per_s=5)
    gate = threading.Event()  # holds the intake thread, as a slow disk would

    def check(topic: str, payload: bytes, reply: ReplyTo) -> None:
        gate.wait(10)
        desk.on_message(topic, payload, reply)

    intake = CommandIntake(section, check, desk.busy, counters)
    intake.start()
    body = json.dumps({"v": 1, "id": "flood-{}", "issued": now_iso()}).encode()
    try:
        for i in range(5000):  # as fast as the network thread could hand them over
            intake.on_message(TOPICS.cmd("selftest"), body.replace(b"{}", str(i).encode()),
                              ReplyTo(None, str(i).encode()))
            assert intake.queued() <= section.queue
        gate.set()
        wait_for(lambda: intake.queued() == 0, what="the queue drained")
    finally:
        intake.close()
        desk.close()
    counts = counters.snapshot()
    assert counts["commands"] == 5000
    taken = 5000 - counts["commands_busy"]
    assert taken <= section.burst  # the queue holds 10, the burst allows 20 over the run
    busy = [r for _, r, _ in answers.sent if r.status == "busy"]
    # a few busy answers, each naming the command it refused; the rest only counted
    assert 1 <= len(busy) <= 10
    assert all(r.id.startswith("flood-") for r in busy)
    assert counts["commands_dropped"] == counts["commands_busy"] - len(busy)
