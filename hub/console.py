"""`edge-hub`: the hub console as a command. Shows every pole on a broker live (or one log
line per event with --plain) and acknowledges alerts automatically (--auto-ack) or when the
operator types `a` / `a N`; `--ack NODE ALERT_ID` sends one ack and exits.

This module only reads arguments and picks the output; the work is in client.HubConsole.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import signal
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from pydantic import TypeAdapter, ValidationError
from rich.live import Live

from contract.ids import uuid7
from contract.link import TlsSection
from contract.payloads import Ack, NodeId
from hub import clock, view
from hub.client import AckNotDelivered, HubConsole, send_ack
from hub.state import HubEvent

__all__ = ["HubConsole", "main"]  # the demo may take HubConsole from here too

_NODE_ID: TypeAdapter[str] = TypeAdapter(NodeId)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-hub", description="Watch the poles on a hub broker and acknowledge alerts.")
    p.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    p.add_argument("--tls-ca", type=Path, help="CA certificate (PEM) for mutual TLS")
    p.add_argument("--tls-cert", type=Path, help="this program's own client certificate (PEM), "
                   "e.g. hub.console's, or hub.ack's for --ack: on the hub's broker its name "
                   "is the client id and the session, so no two programs may share one")
    p.add_argument("--tls-key", type=Path, help="this console's private key (PEM)")
    p.add_argument("--client-id", help="fixed MQTT client id on a broker without certificates: "
                   "keeps the session across runs (with a certificate, the session is its)")
    p.add_argument("--operator", default="hub-console", help="name put in acks ('by')")
    p.add_argument("--auto-ack", action="store_true", help="ack every alert on arrival")
    p.add_argument("--ack", nargs=2, metavar=("NODE", "ALERT_ID"),
                   help="publish one ack, exit 0 once the broker has it")
    p.add_argument("--duration", type=float, metavar="S", help="exit after S seconds")
    p.add_argument("--summary-json", type=Path, metavar="PATH", help="write totals at exit")
    p.add_argument("--plain", action="store_true",
                   help="one line per event, no live table (default when stdout is no terminal)")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def _tls(args: argparse.Namespace) -> TlsSection | None:
    files = (args.tls_ca, args.tls_cert, args.tls_key)
    if not any(files):
        return None
    if not all(files):
        raise ValueError("--tls-ca, --tls-cert and --tls-key go together: give all three")
    return TlsSection(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)


def _bad_argument(args: argparse.Namespace) -> str:
    """What is wrong with --operator or --ack, checked against the contract; "" if nothing."""
    checks: list[tuple[str, Callable[[], object]]] = [
        ("--operator", lambda: Ack(alert_id=uuid7(), by=args.operator, time=clock.now())),
    ]
    if args.ack is not None:
        checks += [
            ("NODE of --ack", lambda: _NODE_ID.validate_python(args.ack[0])),
            ("ALERT_ID of --ack", lambda: Ack(alert_id=args.ack[1], time=clock.now())),
        ]
    for label, check in checks:
        try:
            check()
        except ValidationError as e:
            return f"{label} is not valid: {e.errors(include_url=False)[0]['msg']}"
    return ""


def _on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM and SIGINT end the run cleanly; returns what puts the old handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # only the main thread may set handlers; the caller stops us

    def handler(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)

    return restore


def _read_commands(console: HubConsole, stop: threading.Event) -> None:
    """Operator lines from stdin, on a daemon thread; `q` quits. No stdin: no commands."""
    def run() -> None:
        try:
            for line in sys.stdin:
                if line.strip() in ("q", "quit"):
                    stop.set()
                    return
                if line.strip():
                    console.command(line)
        except (OSError, ValueError):  # stdin closed, or captured (under pytest)
            return

    if sys.stdin is not None:
        threading.Thread(target=run, name="hub-commands", daemon=True).start()


def _ticks(stop: threading.Event, duration: float | None) -> Iterator[None]:
    deadline = None if duration is None else clock.monotonic() + duration
    while not stop.is_set() and (deadline is None or clock.monotonic() < deadline):
        yield
        stop.wait(0.2 if deadline is None else max(0.0, min(0.2, deadline - clock.monotonic())))


def _watch(console: HubConsole, args: argparse.Namespace) -> int:
    stop = threading.Event()
    plain = args.plain or not sys.stdout.isatty()
    events: queue.Queue[HubEvent] = queue.Queue()
    if plain:
        console.on_event = events.put

    def print_events() -> None:
        while not events.empty():
            print(view.event_line(events.get_nowait()), flush=True)

    restore = _on_signals(stop)
    _read_commands(console, stop)
    console.start()
    try:
        if plain:
            for _ in _ticks(stop, args.duration):
                print_events()
        else:
            with Live(get_renderable=console.render, refresh_per_second=4):
                for _ in _ticks(stop, args.duration):
                    pass
    finally:
        console.stop()
        restore()
        print_events()
    summary = console.state.summary()
    if plain:
        print(f"summary {json.dumps(summary)}", flush=True)
    if args.summary_json is not None:
        try:
            args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
        except OSError as e:
            print(f"edge-hub: cannot write --summary-json {args.summary_json}: {e}",
                  file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bad = _bad_argument(args)
    if bad:
        print(f"edge-hub: {bad}", file=sys.stderr)
        return 2
    try:
        tls = _tls(args)
    except ValueError as e:
        print(f"edge-hub: {e}", file=sys.stderr)
        return 2
    try:
        if args.ack is not None:
            node, alert_id = args.ack
            send_ack(args.host, args.port, node, alert_id, operator=args.operator, tls=tls,
                     client_id=args.client_id)
            print(f"ack for alert {alert_id} of {node} delivered to {args.host}:{args.port}")
            return 0
        console = HubConsole(args.host, args.port, auto_ack=args.auto_ack,
                             operator=args.operator, tls=tls, client_id=args.client_id)
    except (OSError, ssl.SSLError) as e:  # TLS files missing or unreadable
        print(f"edge-hub: cannot load the TLS files: {e}", file=sys.stderr)
        return 2
    except AckNotDelivered as e:
        print(f"edge-hub: ack not delivered: {e}", file=sys.stderr)
        return 1
    return _watch(console, args)


if __name__ == "__main__":
    sys.exit(main())
