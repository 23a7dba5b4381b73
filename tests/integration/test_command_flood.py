"""A flood of junk on a pole's command and ack topics must not delay or lose a call: every
press during 50,000 hostile messages reaches the hub, the node answers a bounded share of
them, logs no traceback, and gives its memory back after."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from devkit.localbroker import LocalBroker
from tests.support.flood import CallTaker, FloodProcess, rss_kib
from tests.support.node import NODE_ID, NodeProcess, node_config

FLOOD = 50_000


def press_and_time(node: NodeProcess, hub: CallTaker, seq: int) -> float:
    t0 = time.monotonic()
    node.press()
    arrived = hub.wait(seq, timeout_s=60)
    assert arrived is not None, f"alert seq {seq} never reached the hub:\n{node.log()[-3000:]}"
    time.sleep(0.1)  # the release settles (debounce) before the next press
    return (arrived - t0) * 1000


def test_presses_during_a_flood_of_50000_hostile_messages_all_arrive(
        tmp_path: Path, broker: LocalBroker) -> None:
    broker.tap.allow_invalid(rf"poles/{NODE_ID}/(cmd/.*|ack)")  # type: ignore[attr-defined]
    node = NodeProcess(node_config(tmp_path, broker)).start()
    hub = CallTaker(broker, NODE_ID)
    flood: FloodProcess | None = None
    try:
        assert node.proc is not None
        seq = 1
        press_and_time(node, hub, seq)  # connected, warm
        quiet = []
        for _ in range(10):
            seq += 1
            quiet.append(press_and_time(node, hub, seq))
        time.sleep(1.0)
        rss_before = rss_kib(node.proc.pid)

        flood = FloodProcess(broker, NODE_ID, FLOOD).start()
        during: list[float] = []
        rss_peak = rss_before
        while flood.running() or len(during) < 10:
            seq += 1
            during.append(press_and_time(node, hub, seq))
            rss_peak = max(rss_peak, rss_kib(node.proc.pid))
        flood.join()
        for _ in range(5):  # what the broker still held for the node reaches it now
            seq += 1
            during.append(press_and_time(node, hub, seq))
            rss_peak = max(rss_peak, rss_kib(node.proc.pid))
            time.sleep(1.0)
        rss_after = rss_kib(node.proc.pid)

        assert flood.sent == FLOOD
        print(f"\n{FLOOD} flood messages in {flood.done_at - flood.started_at:.1f} s; "
              f"{len(quiet)} quiet presses p50 {statistics.median(quiet):.1f} ms max "
              f"{max(quiet):.1f} ms; {len(during)} presses in the flood p50 "
              f"{statistics.median(during):.1f} ms max {max(during):.1f} ms; RSS "
              f"{rss_before} → peak {rss_peak} → {rss_after} KiB; node answers {hub.responses}")
        assert node.proc.poll() is None, "the node died in the flood"
        assert sorted(hub.arrived) == list(range(1, seq + 1))  # every call, none lost
        log = node.log()
        assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:4000]
        assert hub.responses < FLOOD // 10, "a flood must not be answered message by message"
        assert len(log.splitlines()) < 5000, "a flood must not flood the log"
        assert rss_after <= rss_before * 1.10, (rss_before, rss_peak, rss_after)
    finally:
        if flood is not None:
            flood.close()
        hub.close()
        node.stop()
