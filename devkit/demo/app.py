"""The `edge-demo` command: arguments, a scratch directory, then broker, the pole's simulated
serial devices, node, hub console and the hub's evidence store started and stopped in order
around the script (run), with the
hub's live view above the narration on a terminal (screen). SIGTERM and Ctrl-C stop it
cleanly; the node's log is kept.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import yaml
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.rule import Rule
from rich.segment import Segment, Segments
from rich.style import Style

from devkit.demo.devices import SerialDevices
from devkit.demo.footage import FootageError, vtest_h264_path
from devkit.demo.pole import START_TIMEOUT_S, DemoError, Pole
from devkit.demo.script import FAST, FULL, NARRATION_LINES, Narration, Pace, Script
from devkit.demo.summary import print_summary, summarize
from devkit.localbroker import LocalBroker
from edge.config import ConfigError, load_config
from hub.client import HubConsole
from hub.evidence import EvidenceStore

DIM = Style(dim=True)

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "docs" / "config" / "demo-node.yaml"
OPERATOR = "demo-dispatch"
# in the demo config: replaced by the path of the sample's H.264 copy (as a camera sends it)
VIDEO_PLACEHOLDER = "vtest.avi"
SOCKET_MAX = 100  # unix socket paths are limited to ~108 bytes; the simulator adds ".new"


def sample_video() -> Path:
    """The sample street video as an IP camera sends it (fetched and converted once)."""
    try:
        return vtest_h264_path()
    except FootageError as e:
        raise DemoError(f"cannot get the sample street video: {e}") from e


def write_config(workdir: Path, broker: LocalBroker, video: Path,
                 devices: SerialDevices) -> Path:
    """The demo node's config, pointed at this run's broker, socket, data directory, video
    and simulated serial devices (started here)."""
    try:
        data = yaml.safe_load(DEMO_CONFIG.read_text())
    except OSError as e:
        raise DemoError(f"cannot read the demo node's config {DEMO_CONFIG}: {e}") from e
    # mutual TLS as in the field: the pole's certificate where `tls: {}` looks for it
    broker.node_tls_dir(data["node"]["id"], workdir / "data")
    data["hub"].update(host=broker.host, port=broker.port, tls={})
    data["gpio"]["simulator_socket"] = str(workdir / "pins.sock")
    data["data_dir"] = str(workdir / "data")
    for camera in data.get("cameras", []):
        if camera["url"] == VIDEO_PLACEHOLDER:
            camera["url"] = str(video)
    devices.start(data)
    path = workdir / "node.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def scratch_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="edge-demo-"))
    if len(os.fsencode(d / "pins.sock.new")) > SOCKET_MAX:  # a long TMPDIR
        shutil.rmtree(d)
        d = Path(tempfile.mkdtemp(prefix="edge-demo-", dir="/tmp"))
    return d


@contextlib.contextmanager
def sigterm_stops() -> Iterator[None]:
    """SIGTERM ends the demo like Ctrl-C does, so the cleanup still runs."""
    def interrupt(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run(workdir: Path, pace: Pace, plain: bool, out: Console) -> int:
    story = Narration(plain)
    broker = LocalBroker(workdir / "broker", secure=True)
    with contextlib.ExitStack() as stack:
        story.say(f"Safe City demo: broker, one pole, the hub console (temp dir {workdir})")
        stack.callback(broker.stop)
        broker.start()
        story.say(f"Mosquitto listening on {broker.host}:{broker.port} with the hub's reference "
                  "config: mutual TLS, the pole's certificate names it, it may use only its "
                  "own topics")
        devices = SerialDevices()
        stack.callback(devices.close)  # after the node has stopped: it never loses a port
        made = time.monotonic()
        video = sample_video()
        if time.monotonic() - made > 1.0:
            story.say(f"sample street video fetched and made into H.264 as an IP camera sends "
                      f"it, in {time.monotonic() - made:.0f} s (cached for the next runs)")
        config = write_config(workdir, broker, video, devices)
        if devices.describe():
            story.say(f"the pole's serial devices, simulated on ptys: {devices.describe()}")
        pole = Pole(load_config(config), config, workdir / "node.log")
        stack.callback(pole.stop)
        pole.start()
        story.say(f"node {pole.cfg.node.id} started (pid {pole.proc.pid if pole.proc else '?'})"
                  f" on simulated pins, log {pole.log_path}")
        if pole.shut_at_start:
            shut = ", ".join(f"{name} (GPIO {pole.inputs[name].pin})"
                             for name in pole.shut_at_start)
            story.say(f"the technician shuts the cabinet: {shut} back at rest; the node reports "
                      "the restoral")
        # the dispatch console's own certificate, as on the hub (hub/broker/acl)
        hub = HubConsole(broker.host, broker.port, auto_ack=True, operator=OPERATOR,
                         tls=broker.identity("hub.console"),
                         on_event=story.hub_events.put if plain else None)
        stack.callback(hub.stop)
        hub.start()
        store = EvidenceStore(workdir / "hub-evidence")
        stack.callback(store.stop)
        store.start()
        host, port = store.address
        story.say(f"hub evidence store (HTTP PUT) at http://{host}:{port}/, "
                  f"files in {store.folder}")
        if not plain:
            stack.enter_context(Live(get_renderable=screen(hub, story, out), console=out,
                                     refresh_per_second=4))
        script = Script(pole, broker, hub, story, pace, store, devices)
        online = script.wait_for(lambda: any(n.node_id == pole.cfg.node.id and
                                             n.state == "online" for n in hub.state.nodes()),
                                 START_TIMEOUT_S)
        if not online:
            raise DemoError(f"the node did not come online at the hub within "
                            f"{START_TIMEOUT_S:.0f} s; see {pole.log_path}")
        story.say(f"hub console ({OPERATOR}, auto-ack) sees {pole.cfg.node.id} online")
        script.run()
        script.finish()
        story.say("stopping the node with SIGTERM, as systemd would")
        node_exit = pole.stop()
        script.wait_for(lambda: all(n.state == "offline" for n in hub.state.nodes()), 3.0)
        state = {n.node_id: f"{n.state} ({n.reason})" for n in hub.state.nodes()}
        story.say(f"node exited with code {node_exit}; the hub sees it "
                  f"{state.get(pole.cfg.node.id, 'unknown')}")
        story.pump()
    rows, missing = summarize(script, hub, node_exit)
    return _conclude(script, rows, missing, plain, out)


def _conclude(script: Script, rows: list[tuple[str, str]], missing: list[str], plain: bool,
              out: Console) -> int:
    """Print the summary and the verdict; the demo's exit code."""
    print_summary(rows, plain, out)
    if script.outage_call is not None:
        print(f"(max latency: the outage call, seq {script.outage_call.seq}, was made during "
              "the outage and arrived after the link was back)")
    for line in missing:
        print(f"FAILED: {line}")
    if not missing:
        print("OK: every press reached the hub exactly once and was acknowledged")
        if script.clip is not None:
            print("OK: the clip around the first call arrived and verified")
        if script.hardware.checks():
            print("OK: the pole's hardware did as configured: PTZ patrol and alert preset, "
                  "relays, sensors, GPS, health")
    return 1 if missing else 0


def screen(hub: HubConsole, story: Narration, out: Console) -> Callable[[], RenderableType]:
    """The hub console's live view above the narration; on a short terminal the view loses
    its bottom rows (the oldest alerts), never the narration's last few lines."""
    def draw() -> RenderableType:
        lines = out.render_lines(hub.render(), out.options, pad=False)
        narration = max(4, min(NARRATION_LINES, out.height - 1 - len(lines)))
        room = max(6, out.height - 1 - narration)
        if len(lines) > room:
            lines = [*lines[: room - 1], [Segment("  … (more rows on a taller terminal)", DIM)]]
        hub_view = Segments([seg for line in lines for seg in (*line, Segment.line())])
        return Group(hub_view, Rule("demo", style="dim"), story.tail(narration))

    return draw


def main(argv: list[str] | None = None) -> int:
    from devkit import demo  # the package docstring describes the command; loaded by now

    p = argparse.ArgumentParser(prog="edge-demo", description=demo.__doc__.splitlines()[0] if
                                demo.__doc__ else None)
    p.add_argument("--fast", action="store_true", help="shorter pauses (for tests)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (config, logs, data)")
    p.add_argument("--plain", action="store_true",
                   help="plain narration lines, no live view (default when stdout is no terminal)")
    args = p.parse_args(argv)
    plain = args.plain or not sys.stdout.isatty()
    # the console's own warnings (link lost, retrying) are already shown as events
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    workdir = scratch_dir()
    node_log = workdir / "node.log"
    code = 1
    try:
        with sigterm_stops():
            code = run(workdir, FAST if args.fast else FULL, plain, Console())
    except KeyboardInterrupt:
        print("\nedge-demo: stopped early; node, console and broker are stopped")
        code = 130
    except (DemoError, ConfigError, RuntimeError, OSError) as e:
        print(f"edge-demo: {e}", file=sys.stderr)
    finally:
        if args.keep or code != 0:
            print(f"node log: {node_log}\ntemp dir kept: {workdir}")
        else:
            if node_log.exists():  # the scratch goes, the node's log stays readable
                fd, kept = tempfile.mkstemp(prefix="edge-demo-node-", suffix=".log")
                os.close(fd)
                shutil.move(node_log, kept)
                node_log = Path(kept)
            shutil.rmtree(workdir, ignore_errors=True)
            print(f"node log: {node_log}")
    return code
