"""Recording while the node's wall clock steps, as NTP or GPS step it after a cold boot.

A real node records a real H.264 stream (2 s segments) with a continuous retention of a few
seconds while its wall clock, and only its wall clock (tests/support/clockstep.py, inherited by
the camera worker and the clip exporter as a system-wide step would be), steps an hour ahead
and then an hour back. The test watches the index from outside, timing each segment on its
own monotonic clock, then asks for the last seconds as a clip, in its own (the hub's) time.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from contract.evidence.keyfiles import PUBLIC_FILE
from contract.evidence.keys import load_public
from contract.evidence.manifest import verify
from devkit.localbroker import LocalBroker
from hub.evidence import EvidenceStore
from tests.support.camera_node import recording_config
from tests.support.clockstep import ClockStep
from tests.support.hub_clients import Hub, iso
from tests.support.node import NodeProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

RETENTION_S = 6.0
SEGMENT_S = 2.0  # recording_config's; the footage has a keyframe every 2 s
HOUR = 3600.0
JOIN_S = 0.15  # consecutive segments meet within this (float rounding of their times)
SEEN_SLACK_S = 1.5  # how late the watch may first see a segment, or see it gone
SWEEP_S = 5.0  # the camera worker's recording tick: retention is checked this often


@dataclass
class Seen:
    id: int
    path: str
    start: float  # its wall-clock label
    end: float
    first: float  # our monotonic clock when it was first listed, and last listed
    last: float
    gone: bool = False


class Watch:
    """The index as another process reads it, polled every 0.2 s."""

    def __init__(self, root: Path) -> None:
        self.db = root / "index.sqlite"
        self.seen: dict[tuple[int, str], Seen] = {}
        self.most = 0

    def poll(self) -> int:
        if not self.db.exists():
            return 0
        conn = sqlite3.connect(self.db, timeout=5)
        try:
            rows = conn.execute("SELECT id, path, start, end FROM segments").fetchall()
        except sqlite3.OperationalError:  # tables not made yet
            rows = []
        finally:
            conn.close()
        now = time.monotonic()
        listed = {(int(r[0]), str(r[1])) for r in rows}
        for i, path, start, end in rows:
            s = self.seen.setdefault((i, path), Seen(i, path, start, end, now, now))
            s.last = now
        for key, s in self.seen.items():
            s.gone = key not in listed
        self.most = max(self.most, len(rows))
        return len(rows)

    def for_(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.poll()
            time.sleep(0.2)

    def in_order(self) -> list[Seen]:
        """Every segment seen, in the order the node recorded them."""
        return sorted(self.seen.values(), key=lambda s: s.id)




def test_retention_continuity_and_clips_hold_when_the_wall_clock_steps_an_hour_each_way(
        tmp_path: Path, broker: LocalBroker, start_node: Any, hub: Hub,
        store: EvidenceStore) -> None:
    clock = ClockStep(tmp_path)
    config = recording_config(tmp_path, broker,
                              retention_days={"continuous": RETENTION_S / 86400})
    node: NodeProcess = start_node(config, env=clock.env())
    watch = Watch(tmp_path / "data" / "recordings")
    wait_for(lambda: watch.poll() >= 3, timeout=40, what="three segments recorded")

    clock.step(+HOUR)
    watch.for_(RETENTION_S + SWEEP_S)
    clock.step(-HOUR)
    stepped_back = time.time()  # the node's clock agrees with ours (the hub's) again
    watch.for_(RETENTION_S + 2 * SWEEP_S)

    # Nothing went before its retention, counted from when it was recorded (it is listed
    # the moment it is complete); footage older than that did go, so retention ran.
    early = [(s.path, round(s.last - s.first, 1)) for s in watch.seen.values()
             if s.gone and s.last - s.first < RETENTION_S - SEEN_SLACK_S]
    assert not early, f"deleted before {RETENTION_S} s: {early}"
    assert any(s.gone for s in watch.seen.values()), "retention never deleted anything"
    # Bounded: the retention, the time until the next sweep, the newest segment.
    bound = int((RETENTION_S + SWEEP_S + SEEN_SLACK_S) / SEGMENT_S) + 2
    assert watch.most <= bound, f"{watch.most} segments listed at once (at most {bound})"

    # No hole and nothing overwritten: each segment starts where the one before it ended, on
    # the clock in force when it started: one jump of +1 h and one of -1 h, at segments' edges.
    order = watch.in_order()
    assert [s.id for s in order] == list(range(order[0].id, order[0].id + len(order)))
    assert len({s.path for s in order}) == len(order)
    jumps = [round(b.start - a.end, 3) for a, b in itertools.pairwise(order)
             if abs(b.start - a.end) > JOIN_S]
    assert len(jumps) == 2 and jumps[0] == pytest.approx(HOUR, abs=JOIN_S) \
        and jumps[1] == pytest.approx(-HOUR, abs=JOIN_S), jumps

    # The hub asks for the last seconds in its own time: the footage recorded then, whole.
    end = time.time() - 1
    start = end - 6
    assert start > stepped_back + SEGMENT_S
    request = {"v": 1, "id": "after-steps", "issued": iso(time.time()), "camera": "street",
               "start": iso(start), "end": iso(end), "upload_url": store.url("c.mp4")}
    hub.send(json.dumps(request).encode())
    wait_for(lambda: any(a["status"] != "accepted" for a in hub.answers("after-steps")),
             timeout=60, what="the clip request settled")
    done = hub.answers("after-steps")[-1]
    assert done["status"] == "done", done
    manifest = done["clip"]["manifest"]
    assert manifest["gaps"] == [] and manifest.get("clock_steps") == []
    covered = manifest["covered"]
    assert start - SEGMENT_S - 0.1 < covered["start_unix"] <= start
    assert end - 0.2 <= covered["end_unix"] <= end + 0.11
    watch.poll()  # the clip's last segment closed after the watch ended
    after = {s.path for s in watch.in_order() if s.id > order[-1].id or s.start >= stepped_back}
    assert {p["path"] for p in manifest["segments"]} <= after, "footage of that time"
    key = load_public(tmp_path / "data" / "identity" / PUBLIC_FILE)
    verdict = verify(store.path("c.mp4"), manifest, key)
    assert verdict.ok, verdict.problem
    assert node.log().count("re-anchored") == 0, "a step is not the camera's clock drifting"
