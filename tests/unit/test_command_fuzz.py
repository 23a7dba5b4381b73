"""The command path under random input: 100,000 topics, payloads and response topics, and
not one crash; plus the age rules, which need a synchronised clock this build machine does
not have (the node's clock state is passed in here).

Hypothesis draws 2,000 structured inputs (valid commands with fields changed, dropped or
added, under right and wrong names; raw bytes; random JSON) and, from each example's own
random seed, 49 byte-level mutants of it: 100,000 inputs. Set SAFECITY_FUZZ_INPUTS for a
longer run.

The desk answers through a link that keeps what it is given, and its node controls only
count calls: the node's side of each command is tested with real processes in
tests/integration/test_commands.py.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.commands import COMMANDS, MAX_COMMAND_BYTES, Check, Response
from contract.topics import NodeTopics
from edge.config.model import NodeConfig
from edge.counters import Counters
from edge.uplink.client import ReplyTo
from edge.uplink.commands import CommandDesk

NODE = "fuzz-0001"
TOPICS = NodeTopics(NODE)
FUZZ_INPUTS = int(os.environ.get("SAFECITY_FUZZ_INPUTS", "100000"))
MUTANTS = 49  # byte-level mutants of each generated input, driven by the example's random


class Answers:
    """The uplink as the desk sees it: every publish kept."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[tuple[str, Response, bytes | None]] = []

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False,
                on_done: Any = None, correlation: bytes | None = None) -> None:
        assert qos == 1 and not retain
        response = Response.model_validate_json(payload)  # every answer keeps the contract
        with self.lock:
            self.sent.append((topic, response, correlation))


class Controls:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def selftest(self) -> list[Check]:
        self.calls.append("selftest")
        return [Check(name="uplink", ok=True)]

    def set_heartbeat(self, interval_s: float, for_s: float | None) -> None:
        self.calls.append("heartbeat")

    def restart(self, why: str) -> None:
        self.calls.append("restart")


def make_desk(tmp_path: Path, *, synced: bool = False) -> tuple[CommandDesk, Answers, Controls]:
    cfg = NodeConfig.model_validate({
        "node": {"id": NODE, "site": "Fuzz", "location": {"lat": 50.0, "lon": 30.0}},
        "hub": {"host": "127.0.0.1"},
        "gpio": {"pin_factory": "mock", "call_button": {"pin": 17}, "call_led": {"pin": 27}},
        "data_dir": str(tmp_path / "data"),
        "commands": {"reboot_command": ["true"]},
    })
    answers, controls = Answers(), Controls()
    desk = CommandDesk(cfg, TOPICS, answers, Counters(), controls, synced=lambda: synced)
    return desk, answers, controls


def now_iso(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat()


VALID: dict[str, dict[str, Any]] = {
    "clip.request": {"camera": "street", "start": "2026-11-21T10:00:00Z",
                     "end": "2026-11-21T10:00:10Z", "upload_url": "http://hub/x.mp4"},
    "config.set": {"set": {"timings.heartbeat_s": 5}},
    "selftest": {},
    "reboot": {"delay_s": 3600},
    "telemetry.interval": {"interval_s": 10},
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=8,
)
names = st.sampled_from([*COMMANDS, "", "reboot/now", "cmd", "x" * 300]) | st.text(max_size=12)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid command with a field changed, dropped or added, often sent under another name."""
    name = draw(st.sampled_from(list(VALID)))
    body: dict[str, Any] = {"v": 1, "id": draw(st.text(max_size=70) | st.just("fuzz-id")),
                            "issued": now_iso(), **VALID[name]}
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([*body, "extra"]))
        if draw(st.booleans()):
            body[key] = draw(json_values)
        else:
            body.pop(key, None)
    topic_name = draw(st.sampled_from([name, name, draw(names)]))
    return topic_name, json.dumps(body).encode()


raw = st.tuples(names, st.binary(max_size=64) | st.text(max_size=64).map(str.encode)
                | json_values.map(lambda v: json.dumps(v).encode()))
inputs = st.tuples(
    st.one_of(mutated(), raw),
    st.none() | st.sampled_from([TOPICS.response, TOPICS.response + "/desk",
                                 "poles/other-0002/response", TOPICS.alert, "#"])
    | st.text(max_size=20),
    st.none() | st.binary(max_size=16),
)


def mutants(payload: bytes, rnd: random.Random, n: int) -> list[bytes]:
    """Byte-level mutants: flips, inserts, deletions, repeats, truncations, splices of JSON."""
    tokens = [b"{", b"}", b"[", b"]", b'"', b":", b",", b"null", b"1e999", b"-0", b"\\u0000",
              b'"id"', b'"issued"', b'"set"', b"\xff", b"\x00"]
    out = []
    for _ in range(n):
        b = bytearray(payload)
        for _ in range(rnd.randint(1, 4)):
            op = rnd.randrange(6)
            at = rnd.randint(0, len(b))
            if op == 0 and b:
                b[min(at, len(b) - 1)] ^= 1 << rnd.randrange(8)
            elif op == 1:
                b[at:at] = rnd.choice(tokens)
            elif op == 2:
                del b[at:at + rnd.randint(1, 8)]
            elif op == 3:
                b[at:at] = b[at:at + rnd.randint(1, 16)] * rnd.randint(2, 50)
            elif op == 4:
                del b[at:]
            else:
                b[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        out.append(bytes(b))
    return out


def test_fuzzing_the_command_path_crashes_nothing_and_answers_everything(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="edge.uplink.commands")  # 100,000 refusals
    desk, answers, controls = make_desk(tmp_path)
    seen = {"inputs": 0}

    @settings(max_examples=FUZZ_INPUTS // (1 + MUTANTS), deadline=None, database=None,
              derandomize=True, suppress_health_check=list(HealthCheck))
    # A seed drawn with the example, not st.randoms(): each of its calls is a Hypothesis draw,
    # and 2,000 × 49 mutants made that most of the run. Same inputs for the same seed.
    @given(inputs, st.integers(0, 2**32 - 1))
    def some(item: tuple[tuple[str, bytes], str | None, bytes | None], seed: int) -> None:
        (name, payload), reply_topic, correlation = item
        for body in [payload, *mutants(payload, random.Random(seed), MUTANTS)]:
            with answers.lock:
                before = len(answers.sent)
            desk.on_message(f"poles/{NODE}/cmd/{name}", body, ReplyTo(reply_topic, correlation))
            seen["inputs"] += 1
            with answers.lock:
                new = answers.sent[before:]
            # answered at once, except valid commands, answered from the command thread
            for topic, response, _corr in new:
                assert topic in (TOPICS.response, TOPICS.response + "/desk"), topic
                assert response.status in ("rejected", "duplicate", "accepted", "done",
                                           "failed", "busy")

    some()
    desk.close()
    assert seen["inputs"] == FUZZ_INPUTS // (1 + MUTANTS) * (1 + MUTANTS)
    statuses = [r.status for _, r, _ in answers.sent]
    assert statuses.count("rejected") > FUZZ_INPUTS * 0.9  # nearly all input is junk
    assert "duplicate" in statuses  # the same id again (fuzz-id) is caught
    assert "restart" not in controls.calls  # config.set without a config file is refused


def test_oversized_commands_are_refused_unread(tmp_path: Path) -> None:
    desk, answers, _ = make_desk(tmp_path)
    body = json.dumps({"v": 1, "id": "big", "issued": now_iso(), "pad": "x" * MAX_COMMAND_BYTES})
    desk.on_message(TOPICS.cmd("selftest"), body.encode(), ReplyTo())
    desk.close()
    ((_, response, _),) = answers.sent
    assert response.status == "rejected" and response.id == ""  # not even its id was read
    assert "at most 16384" in response.error


@pytest.mark.parametrize(("offset_s", "why"), [(-700, "stale: issued 700 s ago"),
                                              (-500, ""),
                                              (120, "in the future")])
def test_a_synchronised_clock_refuses_stale_and_future_commands(
        tmp_path: Path, offset_s: float, why: str) -> None:
    desk, answers, _ = make_desk(tmp_path, synced=True)
    body = {"v": 1, "id": "t-1", "issued": now_iso(offset_s), "interval_s": 10}
    desk.on_message(TOPICS.cmd("telemetry.interval"), json.dumps(body).encode(), ReplyTo())
    desk.close()  # waits for nothing: a refused command is answered on the spot
    first = answers.sent[0][1] if answers.sent else None
    if why:
        assert first is not None and first.status == "rejected" and why in first.error
    else:  # inside max_age_s (600 s): taken and carried out on the command thread
        assert first is None or first.status == "done"


def test_without_a_synchronised_clock_age_is_not_judged_but_ids_still_are(
        tmp_path: Path) -> None:
    desk, answers, _ = make_desk(tmp_path, synced=False)
    body = json.dumps({"v": 1, "id": "old-1", "issued": "2020-01-01T00:00:00Z",
                       "interval_s": 10}).encode()
    desk.on_message(TOPICS.cmd("telemetry.interval"), body, ReplyTo())
    desk.on_message(TOPICS.cmd("telemetry.interval"), body, ReplyTo())
    desk.close()
    statuses = sorted(r.status for _, r, _ in answers.sent)
    assert "duplicate" in statuses and "rejected" not in statuses
