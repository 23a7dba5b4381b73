"""The uplink fault harness: the scenarios, the stage of real parts each runs on, and the run
that judges one. tests/integration/test_faults.py runs each scenario once; `make soak`
(tests/soak.py) runs them longer, with more kills and a random mix of faults.

Real parts throughout: the hub's secure Mosquitto, real node processes, real sockets;
faults come from real network namespaces (tests/support/netns.py: a pulled link, random loss
with nftables), a TCP proxy (tests/support/faultproxy.py: latency, stall, half-open,
blackhole, reset), broker restarts and `kill -9`. Only the pins are simulated.

A run presses the call button before, during and after its fault, clears the fault, waits
(bounded) until the hub has every alert the node committed and the node has every ack, stops
the node and judges its outbox against what the hub saw (tests/support/fault_report.py; the
hub's and the pole's sides are in tests/support/fault_sides.py).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from devkit.localbroker import LocalBroker
from tests.support.contract import ContractTap
from tests.support.fault_report import Row, judge
from tests.support.fault_sides import HubSide, Pole
from tests.support.faultproxy import FaultProxy
from tests.support.netns import PoleNetwork
from tests.support.node import node_config
from tests.support.waiting import wait_for

ACK_RETRY_S = 8  # an ack lost to a fault is asked for again within a scenario's bound
SETTLE_S = 45  # after the fault: bound on the hub having every alert and the node every ack


# --- scenarios ---

@dataclass(frozen=True)
class Plan:
    """How hard a scenario pushes: the tests use the defaults, the soak more of each."""

    fault_s: float = 6.0  # how long a timed fault lasts
    repeats: int = 3  # broker restarts, resets, faults in the mix
    kills: int = 5
    seed: int = 1
    # After a fault that drops the link, press again at once (False), as a citizen would,
    # or only once the node is back (True).
    wait_for_link: bool = False


@dataclass
class Stage:
    """What a scenario acts on."""

    broker: LocalBroker
    pole: Pole
    hub: HubSide
    plan: Plan
    rng: random.Random
    proxy: FaultProxy | None = None
    net: PoleNetwork | None = None

    def back(self, connects_before: int | None = None) -> None:
        """Wait for the node's link: a new connection since `connects_before`, or else
        its last word being that it is connected."""
        if not self.plan.wait_for_link:
            return
        if connects_before is None:
            wait_for(self.pole.linked, timeout=30, what="the node connected to the broker")
        else:
            wait_for(lambda: self.pole.connects() > connects_before, timeout=30,
                     what="the node connecting to the broker again")


def _during(s: Stage) -> int:
    return max(4, round(s.plan.fault_s))  # about a press a second while the fault lasts


def unplugged(s: Stage) -> None:
    assert s.net is not None
    s.pole.presses(3)
    before = s.pole.connects()
    s.net.link(False)
    try:
        s.pole.presses(_during(s), over_s=s.plan.fault_s)  # longer than the keepalive
    finally:
        s.net.link(True)
    s.back(before)
    s.pole.presses(3)


def lossy(s: Stage) -> None:
    assert s.net is not None
    s.pole.presses(3)
    s.net.drop(30)
    try:
        s.pole.presses(_during(s), over_s=2 * s.plan.fault_s)
    finally:
        s.net.drop(0)
    s.back()  # the link may have held through the loss, or be coming back
    s.pole.presses(3)


def slow(s: Stage) -> None:
    assert s.proxy is not None
    s.pole.presses(3)
    s.proxy.delay(up_s=0.3, down_s=0.3)
    try:
        s.pole.presses(_during(s), over_s=s.plan.fault_s)
    finally:
        s.proxy.clear()
    s.pole.presses(3)


def stalled(s: Stage) -> None:
    assert s.proxy is not None
    s.pole.presses(3)
    before = s.pole.connects()
    s.proxy.stall()  # longer than the node's keepalive (3 s): it must give up on the link
    try:
        s.pole.presses(_during(s), over_s=s.plan.fault_s + 2)
    finally:
        s.proxy.resume()
    s.back(before)
    s.pole.presses(3)


def half_open(s: Stage) -> None:
    assert s.proxy is not None
    s.pole.presses(3)
    before = s.pole.connects()
    assert s.proxy.half_open() >= 1, "the node had no connection through the proxy"
    s.proxy.blackhole()  # its first reconnects fall into a hole too
    try:
        s.pole.presses(_during(s), over_s=s.plan.fault_s)
    finally:
        s.proxy.blackhole(False)
    wait_for(lambda: s.pole.connects() > before, timeout=30,
             what="the node noticing the silent link and connecting again")
    s.pole.presses(3)


def broker_restarts(s: Stage) -> None:
    for _ in range(s.plan.repeats):
        s.pole.presses(2)
        before = s.pole.connects()
        s.broker.stop()
        s.pole.presses(2)
        s.broker.start()
        s.back(before)
    s.pole.presses(2)


def resets(s: Stage) -> None:
    assert s.proxy is not None
    for _ in range(s.plan.repeats):
        s.pole.presses(2)
        before = s.pole.connects()
        s.proxy.reset()
        s.back(before)
    s.pole.presses(2)


def kills(s: Stage) -> None:
    for _ in range(s.plan.kills):
        for _ in range(s.rng.randint(1, 3)):
            s.pole.press()
            time.sleep(s.rng.uniform(0.05, 0.3))
        time.sleep(s.rng.uniform(0.0, 0.3))  # on the commit, the publish, the PUBACK or the ack
        s.pole.kill9()
        s.pole.start()
        s.back()
    s.pole.presses(2)


def mixed(s: Stage) -> None:
    """A seeded random run of the proxy's faults, broker restarts and kills (soak only)."""
    assert s.proxy is not None
    proxy = s.proxy
    for _ in range(s.plan.repeats):
        fault = s.rng.choice(["delay", "stall", "half_open", "reset", "trickle", "restart",
                              "kill"])
        s.pole.presses(s.rng.randint(1, 3))
        before = s.pole.connects()
        if fault == "delay":
            proxy.delay(s.rng.uniform(0.05, 0.5), s.rng.uniform(0.05, 0.5))
        elif fault == "stall":
            proxy.stall()
        elif fault == "half_open":
            proxy.half_open()
        elif fault == "reset":
            proxy.reset()
        elif fault == "trickle":
            proxy.trickle(s.rng.choice([500, 2000, 20000]))
        elif fault == "restart":
            s.broker.stop()
        else:
            s.pole.kill9()
            s.pole.start()
        s.pole.presses(s.rng.randint(1, 4), over_s=s.rng.uniform(1, s.plan.fault_s))
        proxy.clear()
        if not s.broker.running:
            s.broker.start()
        if fault in ("half_open", "reset", "restart"):
            s.back(before)
        else:  # a kill, or a fault the link may have survived
            s.back()
    s.pole.presses(2)


# name → (scenario, where the pole runs: "netns" | "proxy")
SCENARIOS: dict[str, tuple[Callable[[Stage], None], str]] = {
    "link down/up": (unplugged, "netns"),
    "30% packet loss": (lossy, "netns"),
    "300 ms latency": (slow, "proxy"),
    "stall > keepalive": (stalled, "proxy"),
    "half-open + blackhole": (half_open, "proxy"),
    "broker restarts": (broker_restarts, "proxy"),
    "connection resets": (resets, "proxy"),
    "kill -9": (kills, "proxy"),
    "random mix": (mixed, "proxy"),
}


# --- running one ---

@contextlib.contextmanager
def staged(where: str, workdir: Path, plan: Plan, keepalive_s: int = 3) -> Iterator[Stage]:
    """A fresh secure broker, the hub side, and a pole connected to the broker through a
    network namespace's link (`netns`) or through the fault proxy (`proxy`)."""
    with contextlib.ExitStack() as stack:
        net = None
        if where == "netns":
            net = stack.enter_context(PoleNetwork())
            broker = LocalBroker(workdir / "broker", secure=True, host=net.broker_ip,
                                 wrap=net.broker_wrap)
        else:
            broker = LocalBroker(workdir / "broker", secure=True)
        broker.start()
        stack.callback(broker.close)
        tap = ContractTap(broker)
        stack.callback(tap.close)
        hub = HubSide(broker)
        stack.callback(hub.close)
        config = node_config(workdir, broker, ack_retry_s=ACK_RETRY_S)
        proxy = None
        if where == "proxy":
            proxy = stack.enter_context(FaultProxy((broker.host, broker.port)))
        cfg = yaml.safe_load(config.read_text())
        cfg["hub"]["keepalive_s"] = keepalive_s
        if proxy is not None:
            cfg["hub"]["port"] = proxy.port  # the certificate still names the host: same
        config.write_text(yaml.safe_dump(cfg))
        pole = Pole(config, net.node_wrap if net else None)
        stack.callback(pole.stop)
        stage = Stage(broker, pole, hub, plan, random.Random(plan.seed), proxy, net)
        yield stage
        if tap.errors:
            raise AssertionError("messages the AsyncAPI document does not allow:\n"
                                 + "\n".join(tap.errors[:10]))


def settle(s: Stage) -> None:
    """Wait (bounded) until the hub has every alert the node committed and the node has
    every ack; what is still missing then is judged, with the details, by judge()."""

    def settled() -> bool:
        rows = s.pole.rows()
        got = s.hub.alert_ids()
        return len(rows) >= s.pole.expected and all(
            r.id in got and r.acked_at is not None for r in rows)

    with contextlib.suppress(AssertionError):
        wait_for(settled, timeout=SETTLE_S, what="the hub and the node to settle")


def run(name: str, workdir: Path, plan: Plan = Plan()) -> Row:
    """Stage scenario `name`, run it, wait for the hub and the node to settle, judge."""
    scenario, where = SCENARIOS[name]
    with staged(where, workdir, plan) as s:
        s.pole.start()
        wait_for(lambda: s.hub.seen("telemetry"), timeout=30,
                 what="the node's first heartbeat at the hub")
        start = time.monotonic()
        scenario(s)
        settle(s)
        seconds = time.monotonic() - start
        s.pole.stop()
        row = judge(name, s.pole, s.hub, seconds, all_presses=s.pole.kills == 0)
        if not row.ok:
            row.problems.append("node log, last lines:\n" + s.pole.log_tail())
        return row
