"""Fleet: 1,000 simulated poles on one Mosquitto over mutual TLS, then a broker restart.

The broker runs the hub's reference config (hub/broker/: mutual TLS, CN as username,
per-pole ACL, persistence) on loopback; every pole has its own certificate, issued during
set-up. Poles are light asyncio clients (bench/fleet_client.py), a few hundred per process,
behaving on the wire like the node's uplink; one hub consumer (bench/fleet_hub.py) reads
every pole and acks alerts. Phases:
1. baseline: one pole alone, alerts at the fleet's rate: latency and broker CPU;
2. connect: the whole fleet at once; time until every pole is connected and subscribed;
3. steady: heartbeats and Poisson alerts; alert latency, broker CPU and RSS;
4. storm: the broker restarts (same port, persistence on) and every pole reconnects with
   the node's jittered backoff; time until all are back and subscribed ("settled"), the
   reconnect curve, alerts raised meanwhile (sent, delivered, duplicates, latency);
5. the same storm again as the baseline: every pole retrying on the same fixed schedule;
6. drain: alerts stop, every pole's unacknowledged publishes are flushed, totals checked.

    python bench/fleet.py [--nodes 1000] [--processes 4] [--steady-s 40] [--markdown]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from fleet_client import PoleIdentity, PoleProcess, SentAlert, run_poles
from fleet_hub import FleetHub
from report import Row, print_table

from devkit.localbroker import LocalBroker

CURVE_S = (1, 2, 5, 10, 20, 30, 60)
SETTLE_TARGET_S = 60.0


# --- the broker process, from /proc ---


def broker_pid(broker: LocalBroker) -> int:
    """The running mosquitto of `broker` (the one whose command line names its config)."""
    conf = str(broker.conf).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if conf in argv and argv[0].endswith(b"mosquitto"):
            return int(proc.name)
    raise RuntimeError(f"no mosquitto running with {broker.conf}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


_TICKS = float(os.sysconf("SC_CLK_TCK"))


# --- the fleet's processes ---


class Fleet:
    """Processes of poles, what they last reported, and their final reports."""

    def __init__(self, specs: list[PoleProcess]) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that runs paho's thread
        self.size = sum(len(s.poles) for s in specs)
        self.shares = [len(s.poles) / self.size for s in specs]
        self.conns: list[Connection] = []
        self.procs = []
        for spec in specs:
            ours, theirs = ctx.Pipe()
            p = ctx.Process(target=run_poles, args=(spec, theirs), daemon=True)
            p.start()
            self.conns.append(ours)
            self.procs.append(p)
        self.counts: list[tuple[int, int, int, float]] = [(0, 0, 0, 0.0)] * len(specs)
        self.reports: list[dict[str, Any] | None] = [None] * len(specs)
        self.closed: set[Connection] = set()
        ready = [c.recv() for c in self.conns]  # each has loaded its poles' certificates
        assert all(r == ("ready",) for r in ready), ready

    def tell(self, *cmd: Any) -> None:
        for c in self.conns:
            c.send(cmd)

    def alerts(self, per_s: float, phase: str) -> None:
        for c, share in zip(self.conns, self.shares, strict=True):
            c.send(("alerts", per_s * share, phase))

    def pump(self, seconds: float) -> None:
        """Take in what the processes report for `seconds`."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            open_ = [c for c in self.conns if c not in self.closed]
            if not open_:
                time.sleep(left)
                return
            for c in wait(open_, timeout=left):
                assert isinstance(c, Connection)
                i = self.conns.index(c)
                while c.poll():
                    try:
                        msg = c.recv()
                    except EOFError:  # the process has sent its report and exited
                        self.closed.add(c)
                        break
                    if msg[0] == "counts":
                        self.counts[i] = msg[1:]
                    elif msg[0] == "report":
                        self.reports[i] = msg[1]

    def until(self, done: Callable[[], bool], timeout_s: float) -> float | None:
        """The monotonic time `done()` first held (checked every 50 ms), None on timeout."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.pump(0.05)
            if done():
                return time.monotonic()
        return None

    @property
    def subscribed(self) -> int:
        return sum(c[1] for c in self.counts)

    @property
    def pending(self) -> int:
        return sum(c[2] for c in self.counts)

    @property
    def cpu_s(self) -> float:
        return sum(c[3] for c in self.counts)

    def stop(self) -> list[dict[str, Any]]:
        self.tell("stop")
        self.until(lambda: all(r is not None for r in self.reports), 30)
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
        return [r for r in self.reports if r is not None]


# --- what the reports say ---


def connected_at(links: list[list[tuple[float, bool]]], t: float) -> int:
    """Poles connected and subscribed at monotonic time `t`."""
    n = 0
    for events in links:
        state = False
        for when, up in events:
            if when > t:
                break
            state = up
        n += state
    return n


def series(links: list[list[tuple[float, bool]]], t0: float, end: float) -> str:
    """The curve as `1 s 412 · 2 s 987 · 5 s 1000`, until all are back or the phase ended."""
    out = []
    for x in CURVE_S:
        if t0 + x > end:
            break
        n = connected_at(links, t0 + x)
        out.append(f"{x} s {n}")
        if n == len(links):
            break
    return " · ".join(out)


def back(links: list[list[tuple[float, bool]]], t0: float) -> list[float | None]:
    """Per pole, seconds from `t0` until it was first subscribed after it (None: never)."""
    return [next((w - t0 for w, up in events if up and w > t0), None) for events in links]


def all_back(links: list[list[tuple[float, bool]]], t0: float) -> float | None:
    """Seconds from `t0` until the last pole was subscribed again, None if one never was."""
    times = back(links, t0)
    return None if None in times else max(t for t in times if t is not None)


def spread(links: list[list[tuple[float, bool]]], t0: float) -> str:
    """When the first and the median pole were back: where the curve rises."""
    times = sorted(t for t in back(links, t0) if t is not None)
    return f"first {times[0]:.1f} s, half {times[len(times) // 2]:.1f} s" if times else ""


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def ms(values: list[float]) -> str:
    if not values:
        return "none"
    return f"{pct(values, 50) * 1000:.1f} / {pct(values, 99) * 1000:.1f} ms"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else ""


# --- the run ---


def raise_fd_limit(nodes: int) -> None:
    """Mosquitto (our child) needs a descriptor per pole; it inherits this process's limit."""
    need = nodes + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        print(f"open-file limit {hard} is below the {need} this fleet needs; expect refused "
              f"connections (raise it with `ulimit -Hn`, or run fewer --nodes)", file=sys.stderr)
        need = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    print(f"open-file limit raised from {soft} to {need}", file=sys.stderr)


def note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def specs_for(idents: list[PoleIdentity], processes: int, broker: LocalBroker,
              args: argparse.Namespace) -> list[PoleProcess]:
    return [PoleProcess(idents[i::processes], broker.host, broker.port,
                        server_hostname=broker.host if broker.secure else None,
                        heartbeat_s=args.heartbeat_s)
            for i in range(processes) if idents[i::processes]]


def storm(fleet: Fleet, broker: LocalBroker, args: argparse.Namespace, tag: str,
          jitter: bool) -> dict[str, Any]:
    """Restart the broker under the fleet; back when every pole is subscribed again."""
    fleet.tell("jitter", jitter)
    fleet.alerts(args.alert_rate, f"storm {tag}")
    fleet_cpu0 = fleet.cpu_s
    t0 = time.monotonic()
    listening: list[float] = []

    def restart_broker() -> None:
        broker.stop()
        time.sleep(args.down_s)  # a hub that takes longer to come back than a bare restart
        broker.start()
        listening.append(time.monotonic())

    restart = threading.Thread(target=restart_broker)
    restart.start()
    fleet.until(lambda: bool(listening), 30)  # keep reading the pipes meanwhile
    restart.join()
    pid = broker_pid(broker)
    settled = fleet.until(lambda: fleet.subscribed == fleet.size, args.storm_timeout_s)
    end = settled or time.monotonic()
    out = {"t0": t0, "down_s": listening[0] - t0, "live_settle_s": end - t0,
           "broker_cpu_s": cpu_s(pid), "fleet_cpu_s": fleet.cpu_s - fleet_cpu0,
           "broker_cpu_pct": 100 * cpu_s(pid) / max(end - listening[0], 1e-3),
           "fleet_cpu_pct": 100 * (fleet.cpu_s - fleet_cpu0) / (end - t0),
           "rss_mb": rss_mb(pid), "timed_out": settled is None}
    fleet.alerts(args.alert_rate, f"after {tag}")
    fleet.pump(args.after_s)
    out["end"] = time.monotonic()
    return out


def run(args: argparse.Namespace, workdir: Path) -> tuple[list[Row], int]:
    raise_fd_limit(args.nodes)
    broker = LocalBroker(workdir / "broker", secure=not args.plaintext)
    names = [f"fleet-{i:04d}" for i in range(1, args.nodes + 1)]
    t = time.monotonic()
    idents = []
    for name in [*names, "fleet-solo"]:
        tls = broker.tls(name)
        idents.append(PoleIdentity(name) if tls is None else
                      PoleIdentity(name, str(tls.ca), str(tls.cert), str(tls.key)))
    issue_s = time.monotonic() - t
    note(f"{len(idents)} certificates issued in {issue_s:.1f} s")
    broker.start()
    hub = FleetHub(broker)
    try:
        # 1. one pole alone
        solo = Fleet(specs_for(idents[-1:], 1, broker, args))
        solo.tell("go")
        solo.until(lambda: solo.subscribed == 1, 30)
        pid = broker_pid(broker)
        c0, t = cpu_s(pid), time.monotonic()
        solo.alerts(args.alert_rate, "solo")
        note(f"one pole: {args.solo_s:.0f} s of alerts at {args.alert_rate}/s ...")
        solo.pump(args.solo_s)
        solo_cpu = 100 * (cpu_s(pid) - c0) / (time.monotonic() - t)
        solo_rss = rss_mb(pid)
        solo.alerts(0, "")
        solo.until(lambda: solo.pending == 0, 10)
        solo.pump(1.0)
        solo_report = solo.stop()

        # 2. connect the fleet
        note(f"{args.nodes} poles in {args.processes} processes: connecting ...")
        fleet = Fleet(specs_for(idents[:-1], args.processes, broker, args))
        c0, f0 = cpu_s(pid), fleet.cpu_s
        t_go = time.monotonic()
        fleet.tell("go")
        fleet.alerts(args.alert_rate, "connect")
        connected = fleet.until(lambda: fleet.subscribed == fleet.size, args.storm_timeout_s)
        if connected is None:
            note(f"only {fleet.subscribed} of {fleet.size} poles connected")
        connect_cpu = (cpu_s(pid) - c0, fleet.cpu_s - f0)

        # 3. steady state
        fleet.alerts(args.alert_rate, "steady")
        fleet.pump(2.0)
        note(f"steady: {args.steady_s:.0f} s ...")
        c0, f0, t = cpu_s(pid), fleet.cpu_s, time.monotonic()
        fleet.pump(args.steady_s)
        wall = time.monotonic() - t
        steady_cpu = 100 * (cpu_s(pid) - c0) / wall
        steady_fleet_cpu = 100 * (fleet.cpu_s - f0) / wall
        steady_rss = rss_mb(pid)
        beats0 = hub.beats

        # 4, 5. the storms
        note("storm: broker restart, jittered backoff ...")
        jit = storm(fleet, broker, args, "jitter", jitter=True)
        note("storm: broker restart, fixed schedule ...")
        fix = storm(fleet, broker, args, "fixed", jitter=False)

        # 6. drain
        fleet.alerts(0, "")
        fleet.until(lambda: fleet.pending == 0, 30)
        fleet.pump(2.0)
        reports = fleet.stop()
    finally:
        hub.close()
        broker.close()

    links = [ev for r in reports for ev in r["links"]]
    alerts: dict[str, list[SentAlert]] = defaultdict(list)
    for r in solo_report + reports:
        for a in r["alerts"]:
            alerts[a.phase].append(a)
    errors: Counter[str] = sum((r["errors"] for r in solo_report + reports), Counter())

    def phase(name: str) -> tuple[int, list[float], int, list[float]]:
        ids = [a.id for a in alerts[name]]
        lat, dups = hub.received(ids)
        rtts = [a.ack_rtt for a in alerts[name] if a.ack_rtt is not None]
        return len(ids), lat, dups, rtts

    connect_s = all_back(links, t_go)
    curve = {name: series(links, s["t0"], s["end"])
             for name, s in (("jitter", jit), ("fixed", fix))}
    settle = {name: all_back(links, s["t0"]) for name, s in (("jitter", jit), ("fixed", fix))}
    s_n, s_lat, s_dups, s_rtt = phase("steady")
    o_n, o_lat, o_dups, o_rtt = phase("solo")
    conn_curve = series(links, t_go, jit["t0"])

    def secs(v: float | None) -> str:
        return "never" if v is None else f"{v:.1f} s"

    rows = [
        Row("set-up: certificates issued", f"{len(idents)} in {issue_s:.1f} s",
            f"{issue_s / len(idents) * 1000:.1f} ms each"),
        Row(f"connect: all {args.nodes} connected + subscribed", secs(connect_s),
            spread(links, t_go) + f"; {args.processes} processes × "
            f"{args.nodes // args.processes} poles"),
        Row("connect: CPU per pole connected, broker / poles",
            f"{connect_cpu[0] / args.nodes * 1000:.2f} / "
            f"{connect_cpu[1] / args.nodes * 1000:.2f} ms",
            f"broker {connect_cpu[0]:.1f} s, poles {connect_cpu[1]:.1f} s in all"),
        Row("connect: poles subscribed after", conn_curve),
        Row("steady: alert latency p50 / p99", ms(s_lat), f"1 pole: {ms(o_lat)}",
            ratio(pct(s_lat, 50), pct(o_lat, 50)) + " / " + ratio(pct(s_lat, 99), pct(o_lat, 99))),
        Row("steady: alert → ack at the pole p50 / p99", ms(s_rtt), f"1 pole: {ms(o_rtt)}",
            ratio(pct(s_rtt, 50), pct(o_rtt, 50))),
        Row("steady: alerts sent / delivered / dups", f"{s_n} / {len(s_lat)} / {s_dups}",
            f"1 pole: {o_n} / {len(o_lat)} / {o_dups}", "", "all delivered"),
        Row("steady: broker CPU", f"{steady_cpu:.1f} % of a core",
            f"1 pole: {solo_cpu:.1f} %", ratio(steady_cpu, solo_cpu)),
        Row("steady: broker RSS", f"{steady_rss:.0f} MB", f"1 pole: {solo_rss:.0f} MB",
            ratio(steady_rss, solo_rss)),
        Row("steady: pole processes CPU (all)", f"{steady_fleet_cpu:.0f} % of a core",
            f"heartbeat every {args.heartbeat_s:g} s, {args.alert_rate:g} alerts/s"),
    ]
    rows.append(Row("storm: broker down (stop + start)", f"{jit['down_s']:.2f} s",
                    f"fixed run: {fix['down_s']:.2f} s"))
    j_set, f_set = settle["jitter"], settle["fixed"]
    rows += [
        Row("storm: settled (all re-subscribed), jittered", secs(j_set),
            f"fixed schedule: {secs(f_set)}",
            ratio(j_set, f_set) if j_set and f_set else "", f"≤ {SETTLE_TARGET_S:.0f} s"),
        Row("storm: poles subscribed after restart", curve["jitter"], "fixed: " + curve["fixed"]),
        Row("storm: first / half back", spread(links, jit["t0"]),
            "fixed: " + spread(links, fix["t0"])),
    ]
    j_n, j_lat, j_dups, _ = phase("storm jitter")
    f_n, f_lat, f_dups, _ = phase("storm fixed")
    rows += [
        Row("storm: alerts sent / delivered / dups", f"{j_n} / {len(j_lat)} / {j_dups}",
            f"fixed: {f_n} / {len(f_lat)} / {f_dups}", "", "all delivered"),
        Row("storm: alert latency p50 / p99", ms(j_lat), f"fixed: {ms(f_lat)}",
            ratio(pct(j_lat, 50), pct(f_lat, 50)) if j_lat and f_lat else ""),
        Row("storm: broker CPU (start → settled)", f"{jit['broker_cpu_pct']:.0f} % of a core",
            f"fixed: {fix['broker_cpu_pct']:.0f} %",
            ratio(jit["broker_cpu_pct"], fix["broker_cpu_pct"])),
        Row("storm: pole processes CPU (restart → settled)", f"{jit['fleet_cpu_pct']:.0f} %",
            f"fixed: {fix['fleet_cpu_pct']:.0f} %"),
        Row("storm: CPU per pole reconnected, broker / poles",
            f"{jit['broker_cpu_s'] / args.nodes * 1000:.2f} / "
            f"{jit['fleet_cpu_s'] / args.nodes * 1000:.2f} ms",
            f"fixed: {fix['broker_cpu_s'] / args.nodes * 1000:.2f} / "
            f"{fix['fleet_cpu_s'] / args.nodes * 1000:.2f} ms"),
        Row("storm: broker RSS after", f"{jit['rss_mb']:.0f} MB", f"fixed: {fix['rss_mb']:.0f} MB"),
    ]
    every = [a.id for v in alerts.values() for a in v]
    lat_all, dups_all = hub.received(every)
    refused = errors["refused"] + errors["refused publish"] + errors["refused subscription"]
    rows += [
        Row("all phases: alerts sent / delivered / dups", f"{len(every)} / {len(lat_all)} / "
            f"{dups_all}", f"{hub.beats} heartbeats at the hub ({hub.beats - beats0} after "
            "steady)", "", "all delivered"),
        Row("refused by the broker (connect, publish, subscribe)", str(refused),
            f"invalid payloads at the hub: {sum(hub.invalid.values())}", "", "0"),
    ]
    note("links lost and connection attempts failed, by cause: " + (", ".join(
        f"{k} {v}" for k, v in sorted(errors.items(), key=lambda kv: -kv[1])) or "none"))
    ok = (len(lat_all) == len(every) and refused == 0 and j_set is not None
          and j_set <= SETTLE_TARGET_S)
    return rows, 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--steady-s", type=float, default=40.0)
    ap.add_argument("--solo-s", type=float, default=15.0, help="one pole alone, the baseline")
    ap.add_argument("--after-s", type=float, default=10.0, help="steady time after each storm")
    ap.add_argument("--down-s", type=float, default=0.0,
                    help="keep the broker stopped this long in each restart")
    ap.add_argument("--storm-timeout-s", type=float, default=120.0)
    ap.add_argument("--heartbeat-s", type=float, default=10.0)
    ap.add_argument("--alert-rate", type=float, default=10.0, help="alerts/s, whole fleet")
    ap.add_argument("--plaintext", action="store_true", help="plain MQTT, no TLS, no ACL")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-fleet-") as d:
        rows, rc = run(args, Path(d))
    print_table(rows, args.markdown)
    return rc


if __name__ == "__main__":
    sys.exit(main())
