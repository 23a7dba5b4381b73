"""Call-button latency under a flood of hostile commands, against the same presses with none.

One real node process (simulated pins, real outbox) on the hub's reference broker (mutual
TLS, ACL), keepalive 5 s. Each scenario makes the same presses one after another and times
each from the pin being driven to the alert at a hub subscriber (CLOCK_MONOTONIC is shared
by the processes of one machine); the subscriber acks each alert as the hub does. The flood
scenarios send junk on the pole's command and ack topics from a hub consumer's certificate
the whole time, from a process of its own (tests/support/flood.py: bad JSON, wrong fields,
unknown alert ids, JSON nested thousands deep, oversized bodies): at 1,000 messages a
second, then as fast as the broker takes them. The node's resident memory is read before,
at its peak during, and after each scenario (after: once the flood has stopped and the
broker has handed the node all it held).

    python bench/flood.py [--presses 200] [--markdown]     (from the project's root)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from report import print_columns

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/

from devkit.localbroker import LocalBroker
from tests.support.flood import CallTaker, FloodProcess, rss_kib
from tests.support.node import NODE_ID, NodeProcess, node_config


def run_scenario(presses: int, rate: float | None, flood: bool, workdir: Path) -> dict[str, Any]:
    broker = LocalBroker(workdir / "broker", secure=True)
    broker.start()
    config = node_config(workdir, broker)
    text = config.read_text().replace("keepalive_s: 3", "keepalive_s: 5")
    config.write_text(text.replace("heartbeat_s: 1", "heartbeat_s: 5"))
    node = NodeProcess(config).start()
    hub = CallTaker(broker, NODE_ID)
    flooder: FloodProcess | None = None
    try:
        assert node.proc is not None
        pid = node.proc.pid
        _press(node, hub, 1)  # connected and warm
        time.sleep(1.0)
        before = peak = rss_kib(pid)
        if flood:
            flooder = FloodProcess(broker, NODE_ID, 10_000_000, rate_per_s=rate).start()
            time.sleep(2.0)  # the flood at full strength before the first timed press
        latencies: list[float] = []
        lost = 0
        for seq in range(2, presses + 2):
            ms = _press(node, hub, seq)
            if ms is None:
                lost += 1
            else:
                latencies.append(ms)
            peak = max(peak, rss_kib(pid))
        sent = 0
        if flooder is not None:
            sent = flooder.sent
            flooder.stop()
            flooder.join()
            time.sleep(3.0)  # what the broker still held reaches the node
        after = rss_kib(pid)
        alive = node.proc.poll() is None
    finally:
        if flooder is not None:
            flooder.close()
        hub.close()
        node.stop()
        broker.close()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"presses": presses, "lost": lost, "flood": sent, "answers": hub.responses,
            "p50": statistics.median(latencies), "p99": q[98], "max": max(latencies),
            "rss": (before, peak, after), "alive": alive}


def _press(node: NodeProcess, hub: CallTaker, seq: int) -> float | None:
    t0 = time.monotonic()
    node.press(bounce=False)
    arrived = hub.wait(seq, timeout_s=60)
    time.sleep(0.05)  # the release settles before the next press
    return None if arrived is None else (arrived - t0) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=200)
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()
    scenarios = [("quiet", None, False), ("flood 1,000 msg/s", 1000.0, True),
                 ("flood, as fast as the broker takes it", None, True)]
    rows = []
    for name, rate, flood in scenarios:
        with tempfile.TemporaryDirectory(prefix="edge-bench-") as d:
            print(f"running {args.presses} presses, {name} ...", file=sys.stderr)
            rows.append((name, run_scenario(args.presses, rate, flood, Path(d))))
    base = rows[0][1]
    head = ["scenario", "presses", "lost", "flood msgs", "node answers", "p50 ms", "p99 ms",
            "max ms", "p99 ×quiet", "RSS before MB", "peak MB", "after MB", "after/before"]
    table = [[name, str(r["presses"]), str(r["lost"]), str(r["flood"]), str(r["answers"]),
              f"{r['p50']:.2f}", f"{r['p99']:.2f}", f"{r['max']:.2f}",
              f"{r['p99'] / base['p99']:.2f}", *(f"{kib / 1024:.1f}" for kib in r["rss"]),
              f"{r['rss'][2] / r['rss'][0]:.3f}"] for name, r in rows]
    print_columns(head, table, args.markdown)
    return 0 if all(r["lost"] == 0 and r["alive"] for _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
