"""The uplink under network faults: every press reaches the hub, once after dedupe by id,
in the order raised, and every alert is acknowledged back through the same faults.

Real parts throughout: the hub's secure Mosquitto, real node processes, real sockets;
faults come from real network namespaces (tests/netns.py: a pulled link, random loss
with nftables), a TCP proxy (tests/faultproxy.py: latency, stall, half-open, blackhole,
reset), broker restarts and `kill -9`. Only the pins are simulated.

Each scenario presses the call button before, during and after its fault, clears the
fault, waits (bounded) until the hub has every alert the node committed and the node has
every ack, stops the node and judges its outbox against what the hub saw:
- lost: alerts in outbox.sqlite the hub never received (must be 0);
- duplicates after dedupe by id: each seq carries one id, seqs run 1..N with N the
  alerts committed (raw re-deliveries are counted and allowed);
- order: by first arrival of each id, seqs increase; heartbeats' `time` and events'
  `seq` increase within their class.
One row per scenario is printed as a table when the module ends (`pytest -s` or `-rA`),
and written as JSON to $SAFECITY_FAULT_REPORT if set. `make soak` (tests/soak.py) runs
the same scenarios longer, with more kills and a random mix of faults.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract.payloads import Ack
from contract.topics import NodeTopics
from devkit.localbroker import LocalBroker
from edge import clock
from provisioning.pki import HUB
from tests import netns
from tests.conftest import NODE_ID, ContractTap, NodeProcess, node_config
from tests.faultproxy import FaultProxy
from tests.netns import PoleNetwork
from tests.waiting import wait_for

TOPICS = NodeTopics(NODE_ID)
ACK_RETRY_S = 8  # an ack lost to a fault is asked for again within a scenario's bound
PRESS_GAP_S = 0.2  # between the end of a press and the next: a person's fastest
SETTLE_S = 45  # after the fault: bound on the hub having every alert and the node every ack


# --- the hub side ---

@dataclass(frozen=True)
class Arrival:
    kind: str  # alert | telemetry | event
    key: str  # what dedupes it: alert id, heartbeat time, event seq
    order: float  # what must increase within the kind: alert seq, heartbeat time, event seq
    seq: int | None = None


class HubSide:
    """The hub, as the fault tests need it: a persistent session with the hub's certificate,
    over a link no fault touches, that keeps every alert, heartbeat and event of the node
    in arrival order and acks every alert it receives, re-deliveries too, as the real hub
    does (the node re-sends only while it lacks our ack)."""

    def __init__(self, broker: LocalBroker) -> None:
        self.arrivals: list[Arrival] = []
        self.acks_sent = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        c = broker.client(HUB, client_id=f"fault-hub-{os.getpid()}")
        c.reconnect_delay_set(1, 1)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *_: self._ready.set()
        c.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600  # alerts sent while we reconnect are kept for us
        c.connect(broker.host, broker.port, keepalive=10, clean_start=False, properties=props)
        c.loop_start()
        self._client = c
        assert self._ready.wait(15), "the hub side could not subscribe"

    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if not reason.is_failure:
            c.subscribe([(TOPICS.alert, 1), (TOPICS.telemetry, 1), (TOPICS.event, 1)])

    def _on_message(self, c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        data = json.loads(msg.payload)
        if msg.topic == TOPICS.alert:
            arrival = Arrival("alert", data["id"], data["seq"], data["seq"])
            ack = Ack(alert_id=data["id"], by="fault-hub", time=clock.now())
            c.publish(TOPICS.ack, ack.to_bytes(), qos=1)
            with self._lock:
                self.acks_sent += 1
        elif msg.topic == TOPICS.telemetry:
            sent = datetime.fromisoformat(data["time"]).timestamp()
            arrival = Arrival("telemetry", data["time"], sent)
        elif "seq" in data:
            arrival = Arrival("event", str(data["seq"]), data["seq"], data["seq"])
        else:  # events without a per-node seq cannot be ordered; dedupe them only
            arrival = Arrival("event", f"{data['id']}/{data.get('phase')}", float("nan"))
        with self._lock:
            self.arrivals.append(arrival)

    def seen(self, kind: str) -> list[Arrival]:
        with self._lock:
            return [a for a in self.arrivals if a.kind == kind]

    def alert_ids(self) -> set[str]:
        return {a.key for a in self.seen("alert")}

    def close(self) -> None:
        props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        self._client.disconnect(properties=props)
        self._client.loop_stop()


# --- the pole ---

class WrappedNode(NodeProcess):
    """conftest's NodeProcess, started under a command prefix (`ip netns exec NS`)."""

    def __init__(self, config: Path, wrap: list[str]) -> None:
        super().__init__(config)
        self.wrap = wrap

    def start(self) -> WrappedNode:
        import subprocess

        from drivers.gpio import PinSimulatorClient

        self.socket.unlink(missing_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.wrap, sys.executable, "-m", "edge.cli", "--log-level", "DEBUG", "run",
             "--config", str(self.config)], stdout=log, stderr=log,
        )
        wait_for(lambda: self.socket.exists() or self.proc.poll() is not None,  # type: ignore[union-attr]
                 what="the node's pin simulator socket")
        assert self.proc.poll() is None, f"node exited at start:\n{self.log()}"
        self.pins = PinSimulatorClient(str(self.socket))
        return self


@dataclass(frozen=True)
class Stored:
    seq: int
    id: str
    acked_at: float | None


class Pole:
    """The node under test: one config and data dir, (re)started as a scenario likes."""

    def __init__(self, config: Path, wrap: list[str] | None = None) -> None:
        self.config = config
        self.wrap = wrap or []
        self.data = Path(NodeProcess(config).cfg["data_dir"])
        self.log_path = config.parent / "node.log"
        self.node: NodeProcess | None = None
        self.pressed = 0
        self.expected = 0  # alerts that must be in the outbox by now
        self.kills = 0
        self._log_from = 0  # where the running process's log begins
        self._last_press = 0.0

    def start(self) -> None:
        self._log_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        node = WrappedNode(self.config, self.wrap) if self.wrap else NodeProcess(self.config)
        self.node = node.start()

    def press(self) -> None:
        """One press, at least PRESS_GAP_S after the last: sooner, the button's debounce
        rightly takes it for bounce of the last one."""
        assert self.node is not None
        time.sleep(max(0.0, self._last_press + PRESS_GAP_S - time.monotonic()))
        self.node.press()
        self._last_press = time.monotonic()
        self.pressed += 1
        self.expected += 1

    def presses(self, n: int, over_s: float = 0.0) -> None:
        """n presses, spread evenly over `over_s` (else a quarter second apart)."""
        gap = over_s / n if over_s else 0.25
        for _ in range(n):
            self.press()
            time.sleep(gap)

    def kill9(self) -> None:
        assert self.node is not None
        self.node.kill9()
        self.kills += 1
        self.expected = len(self.rows())  # a press the node had not taken yet is not a call

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()

    def rows(self) -> list[Stored]:
        path = self.data / "outbox.sqlite"
        if not path.exists():
            return []
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return [Stored(*r) for r in db.execute(
                "SELECT seq, id, acked_at FROM alerts ORDER BY seq").fetchall()]
        except sqlite3.OperationalError:
            return []  # the node has not made its table yet
        finally:
            db.close()

    def log(self, *, all_runs: bool = True) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            f.seek(0 if all_runs else self._log_from)
            return f.read().decode(errors="replace")

    def connects(self) -> int:
        """Connections made to the broker, by every run of the node so far."""
        return self.log().count("connected to hub")

    def linked(self) -> bool:
        """Whether the running node's last word about its link is that it is connected."""
        log = self.log(all_runs=False)
        return log.rfind("connected to hub") > log.rfind("lost hub link")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


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


# --- judging ---

@dataclass
class Row:
    scenario: str
    presses: int
    sent: int  # alerts committed by the node
    delivered: int  # distinct ids at the hub
    raw_duplicates: int  # re-deliveries before dedupe: allowed, for information
    lost: int
    order_kept: bool
    acked: int  # alerts whose ack reached the node
    kills: int
    connects: int  # connections the node made, all its runs together
    seconds: float
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, not a failure

    @property
    def ok(self) -> bool:
        return not self.problems


def judge(name: str, pole: Pole, hub: HubSide, seconds: float, *, all_presses: bool) -> Row:
    rows = pole.rows()
    alerts = hub.seen("alert")
    stored = {r.id: r.seq for r in rows}
    problems: list[str] = []

    firsts: dict[str, Arrival] = {}
    ids_of_seq: dict[int, set[str]] = {}
    for a in alerts:
        firsts.setdefault(a.key, a)
        ids_of_seq.setdefault(a.seq or 0, set()).add(a.key)
    lost = sorted(stored[i] for i in stored.keys() - firsts.keys())
    if lost:
        problems.append(f"lost: seqs {lost} are in the outbox but never reached the hub")
    if strangers := sorted(firsts.keys() - stored.keys()):
        problems.append(f"the hub got alerts the outbox does not hold: {strangers}")
    if twins := {seq: ids for seq, ids in ids_of_seq.items() if len(ids) > 1}:
        problems.append(f"duplicate after dedupe by id: seqs with several ids {twins}")
    if [r.seq for r in rows] != list(range(1, len(rows) + 1)):
        problems.append(f"outbox seqs are not 1..{len(rows)}: {[r.seq for r in rows]}")
    notes: list[str] = []
    if all_presses and len(rows) < pole.pressed:
        problems.append(f"{pole.pressed} presses but only {len(rows)} alerts committed")
    elif all_presses and len(rows) > pole.pressed:  # the button's debounce, not the uplink
        notes.append(f"{pole.pressed} presses raised {len(rows)} alerts")
    if unacked := [r.seq for r in rows if r.acked_at is None]:
        problems.append(f"the hub's ack never reached the node for seqs {unacked}")

    order_kept = True
    for kind in ("alert", "telemetry", "event"):
        firsts_of_kind: dict[str, float] = {}
        for a in hub.seen(kind):
            firsts_of_kind.setdefault(a.key, a.order)
        order = [o for o in firsts_of_kind.values() if o == o]  # NaN: an unordered event
        broken = next((i for i in range(1, len(order)) if order[i] <= order[i - 1]), None)
        if broken is not None:
            order_kept = False
            problems.append(f"{kind} order broken: {order[broken - 1]} arrived before "
                            f"{order[broken]} (first arrivals: {order})")
    return Row(name, pole.pressed, len(rows), len(firsts.keys() & stored.keys()),
               len(alerts) - len(firsts), len(lost), order_kept,
               sum(r.acked_at is not None for r in rows), pole.kills, pole.connects(),
               round(seconds, 1), problems, notes)


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


# --- the report ---

COLUMNS = ("scenario", "presses", "sent", "delivered", "raw dups", "lost", "order kept",
           "acked", "kills", "connects", "seconds")


def table(rows: list[Row]) -> str:
    cells = [COLUMNS, *[(r.scenario, str(r.presses), str(r.sent), str(r.delivered),
                         str(r.raw_duplicates), str(r.lost), "yes" if r.order_kept else "NO",
                         str(r.acked), str(r.kills), str(r.connects), f"{r.seconds:.1f}")
                        for r in rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip()
             for c in cells]
    lines += [f"{r.scenario}: {note}" for r in rows for note in r.notes]
    return "\n".join(lines)


def write_json(rows: list[Row]) -> None:
    path = os.environ.get("SAFECITY_FAULT_REPORT")
    if path:
        Path(path).write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")


REPORT: list[Row] = []


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not REPORT:
        return
    text = ("\n\nuplink fault scenarios (sent = committed by the node, delivered = distinct "
            "ids at the hub)\n" + table(REPORT))
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(text)  # past the capture: a table to read after any run, like a benchmark's
    write_json(REPORT)


@pytest.fixture
def namespaces() -> None:
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)


def check(name: str, tmp_path: Path) -> None:
    row = run(name, tmp_path)
    REPORT.append(row)
    assert row.ok, f"{name}:\n" + "\n".join(row.problems)


# --- the tests ---

@pytest.mark.usefixtures("namespaces")
def test_presses_while_the_link_is_down_reach_the_hub_once_in_order_after_it_returns(
    tmp_path: Path,
) -> None:
    check("link down/up", tmp_path)


@pytest.mark.usefixtures("namespaces")
def test_presses_over_a_link_losing_30_percent_of_packets_all_arrive_once_in_order(
    tmp_path: Path,
) -> None:
    check("30% packet loss", tmp_path)


def test_presses_over_a_slow_link_arrive_once_in_order(tmp_path: Path) -> None:
    check("300 ms latency", tmp_path)


def test_a_link_stalled_past_the_keepalive_is_dropped_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    check("stall > keepalive", tmp_path)


def test_a_half_open_link_is_noticed_by_keepalive_and_nothing_is_lost(tmp_path: Path) -> None:
    check("half-open + blackhole", tmp_path)


def test_presses_around_broker_restarts_all_arrive_once_in_order(tmp_path: Path) -> None:
    check("broker restarts", tmp_path)


def test_connections_reset_under_the_node_lose_nothing(tmp_path: Path) -> None:
    check("connection resets", tmp_path)


def test_kill_9_at_random_moments_loses_no_committed_alert_and_duplicates_none(
    tmp_path: Path,
) -> None:
    check("kill -9", tmp_path)


def test_a_press_while_the_link_is_reconnecting_does_not_overtake_alerts_queued_before(
    tmp_path: Path,
) -> None:
    # A slow link back from the broker (2.5 s) stretches both phases of a reconnect: a press
    # during the TLS handshake (no connection yet), then one between the CONNECT and the
    # CONNACK (the socket is open): the second must not reach the hub first.
    with staged("proxy", tmp_path, Plan(), keepalive_s=10) as s:
        proxy = s.proxy
        assert proxy is not None
        s.pole.start()
        wait_for(lambda: s.hub.seen("telemetry"), timeout=30, what="the node's first heartbeat")
        s.pole.press()
        wait_for(lambda: s.hub.seen("alert"), what="seq 1 at the hub")
        proxy.delay(down_s=2.5)
        proxy.reset()
        wait_for(lambda: proxy.stats.accepted >= 2, what="the node reconnecting")
        reconnecting = time.monotonic()
        time.sleep(1.0)
        s.pole.press()  # seq 2, in the handshake
        time.sleep(max(0.0, reconnecting + 3.7 - time.monotonic()))
        s.pole.press()  # seq 3, between CONNECT and CONNACK
        proxy.clear()
        settle(s)
        s.pole.stop()
        row = judge("press while reconnecting", s.pole, s.hub, 0.0, all_presses=True)
    REPORT.append(row)
    assert row.ok, "\n".join(row.problems)


def test_alerts_sent_into_a_dead_link_are_not_overtaken_by_alerts_held_after_it_was_noticed(
    tmp_path: Path,
) -> None:
    # Seq 2 is sent before the node notices the stalled link (paho keeps it to re-send);
    # seq 3 comes after the keepalive gave up (it waits for the link): 2 must still lead.
    with staged("proxy", tmp_path, Plan()) as s:
        proxy = s.proxy
        assert proxy is not None
        s.pole.start()
        wait_for(lambda: s.hub.seen("telemetry"), timeout=30, what="the node's first heartbeat")
        s.pole.press()
        wait_for(lambda: s.hub.seen("alert"), what="seq 1 at the hub")
        proxy.stall()
        s.pole.press()  # seq 2
        wait_for(lambda: not s.pole.linked(), timeout=30, what="the node giving up on the link")
        s.pole.press()  # seq 3
        proxy.resume()
        settle(s)
        s.pole.stop()
        row = judge("alerts into a dead link", s.pole, s.hub, 0.0, all_presses=True)
    REPORT.append(row)
    assert row.ok, "\n".join(row.problems)
