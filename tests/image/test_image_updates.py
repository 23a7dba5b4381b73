"""Signed A/B updates on the real image under qemu, driven from a hub as a city would: the
image from image.yaml boots through U-Boot's boot.scr on slot A, its node connects to a
Mosquitto on this machine (10.0.2.2 from inside qemu) and takes `firmware.update` commands
for bundles served over HTTP from here. One machine runs the whole sequence; a power cut is
qemu killed. The scenario table is printed at the end (and written beside the console log).

Only what needs a real boot loader and a real power cut is proven here: a good bundle is
committed, a bad one rolls back, a power cut during the install and one during the commit.
Every install is adaptive (the next releases differ from the image's in a few blocks), so it
takes seconds. Refusals (forged, tampered, wrong board, downgrade) are proven against the
real installer on the host: tests/firmware/."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from imagebuild import build, qemu
from imagebuild.disk import cut_partition
from paho.mqtt.enums import CallbackAPIVersion

from devkit.localbroker import LocalBroker, free_port
from firmware import bundle, keys
from firmware.release import Release

pytestmark = [pytest.mark.slow, pytest.mark.image, pytest.mark.timeout(3600)]

NODE = "qemu-update-test"
BOOT_S = 420  # one boot under emulation, U-Boot to the node connected (~90 s alone)


# --- bundles: the next releases, made from the image's own root A ---

def debugfs(image: Path, script: str) -> None:
    done = subprocess.run(["debugfs", "-w", "-f", "-", str(image)], input=script, text=True,
                          capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


def release_like(root: Path, work: Path, version: str, *, broken: bool = False) -> Path:
    """A copy of root A that says it is `version`; `broken`: its node exits at once."""
    image = work / f"root-{version}.ext4"
    subprocess.run(["cp", "--sparse=always", str(root), str(image)], check=True)
    old = subprocess.run(["debugfs", "-R", "cat /usr/lib/safecity-edge/release.json",
                          str(image)], capture_output=True, text=True, check=True).stdout
    release = {**json.loads(old), "version": version}
    (work / "release.json").write_text(json.dumps(release) + "\n")
    script = ("cd /usr/lib/safecity-edge\nrm release.json\n"
              f"write {work / 'release.json'} release.json\n")
    if broken:
        (work / "edge-node").write_text(
            "#!/bin/sh\necho 'this release is broken on purpose (update test)' >&2\nexit 1\n")
        (work / "edge-node").chmod(0o755)
        script += f"cd /opt/safecity-edge/bin\nrm edge-node\nwrite {work / 'edge-node'} edge-node\n"
    debugfs(image, script)
    return image


@functools.cache
def base_release(root: Path) -> Release:
    raw = subprocess.run(["debugfs", "-R", "cat /usr/lib/safecity-edge/release.json",
                          str(root)], capture_output=True, text=True, check=True).stdout
    data = json.loads(raw)
    return Release(version=data["version"], build=data["build"], commit=data["commit"],
                   boards=tuple(data["boards"]))


class Shelf:
    """The bundles a release engineer would publish, served over plain HTTP."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.server = _Server(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://10.0.2.2:{self.server.server_port}/{name}"

    def close(self) -> None:
        self.server.shutdown()


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a node that refuses a bundle hangs up mid-file: that is the point


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Files with single Range requests answered 206, as any release server (nginx, an
    object store) does; Python's own handler ignores Range."""

    def send_head(self) -> Any:
        asked = self.headers.get("Range", "")
        path = Path(self.translate_path(self.path))
        if not asked.startswith("bytes=") or "," in asked or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        first, _, last = asked.removeprefix("bytes=").partition("-")
        start, end = int(first), min(int(last) if last else size - 1, size - 1)
        if start > end:
            self.send_error(416)
            return None
        f = path.open("rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        return _Window(f, end - start + 1)

    def log_message(self, *_args: Any) -> None:
        pass


class _Window:
    """The span of an open file that a 206 answer carries (copyfile reads it to its end)."""

    def __init__(self, f: Any, length: int) -> None:
        self.f, self.left = f, length

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.f.read(size)
        self.left -= len(data)
        return bytes(data)

    def close(self) -> None:
        self.f.close()


# --- the hub ---

class Hub:
    """The city hub's side: sends commands, keeps every response, status and heartbeat."""

    def __init__(self, broker: LocalBroker) -> None:
        self.messages: list[tuple[float, str, dict[str, Any]]] = []
        self._cv = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hub-test",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(f"poles/{NODE}/#", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            return
        with self._cv:
            self.messages.append((time.monotonic(), msg.topic, payload))
            self._cv.notify_all()

    def wait(self, leaf: str, match: Any, timeout_s: float, since: float = 0.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while True:
                for at, topic, payload in self.messages:
                    if at >= since and topic.endswith("/" + leaf) and match(payload):
                        return payload
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(t, p) for a, t, p in self.messages if a >= since][-8:]
                    raise AssertionError(f"nothing on {leaf} matched within {timeout_s:.0f} s; "
                                         f"last seen: {json.dumps(seen)[-3000:]}")
                self._cv.wait(min(left, 1.0))

    def command(self, name: str, **fields: Any) -> tuple[str, float]:
        cid = f"{name}-{uuid.uuid4().hex[:8]}"
        body = {"v": 1, "id": cid, "issued": datetime.now(UTC).isoformat(), **fields}
        sent = time.monotonic()
        self.client.publish(f"poles/{NODE}/cmd/{name}", json.dumps(body), qos=1)
        return cid, sent

    def response(self, cid: str, status: str | tuple[str, ...], timeout_s: float,
                 since: float = 0.0) -> dict[str, Any]:
        wanted = (status,) if isinstance(status, str) else status
        return self.wait("response", lambda p: p.get("id") == cid and p.get("status") in wanted,
                         timeout_s, since)

    def online(self, version: str, timeout_s: float, since: float) -> dict[str, Any]:
        """A heartbeat from the node running `version`."""
        return self.wait("telemetry", lambda p: (p.get("firmware") or {}).get(
            "version") == version, timeout_s, since)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# --- the sequence ---

class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, int, float]] = []

    def add(self, scenario: str, outcome: str, boots: int, seconds: float) -> None:
        self.rows.append((scenario, outcome, boots, seconds))

    def render(self) -> str:
        out = ["| scenario | outcome | boots | time |", "|---|---|---:|---:|"]
        out += [f"| {s} | {o} | {b} | {t:.0f} s |" for s, o, b, t in self.rows]
        return "\n".join(out)


@contextlib.contextmanager
def hub_broker(work: Path) -> Iterator[LocalBroker]:
    broker = LocalBroker(work / "broker", port=free_port(), host="127.0.0.1")
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def node_yaml(port: int) -> str:
    return f"""\
node: {{id: {NODE}, site: "Update test (qemu -M virt)", location: {{lat: 49.71, lon: 28.83}}}}
hub: {{host: 10.0.2.2, port: {port}, keepalive_s: 5, reconnect_min_s: 0.5, reconnect_max_s: 2}}
gpio:
  pin_factory: mock
  call_button: {{pin: 17, pull_up: true}}
  call_led: {{pin: 27, active_high: true}}
timings: {{heartbeat_s: 5}}
"""


def test_updates_commit_roll_back_refuse_and_survive_power_cuts(
        card_image: Path, tmp_path: Path) -> None:
    card = card_image
    table = Table()
    shelf_dir = tmp_path / "shelf"
    shelf_dir.mkdir()
    root = cut_partition(card, 1, tmp_path / "root-a.ext4")
    base = base_release(root)
    key = keys.load_private(build.default_signing_key(build.default_cache()))

    def publish(version: str, *, broken: bool = False) -> str:
        image = release_like(root, tmp_path, version, broken=broken)
        name = f"edge-{version}.bundle"
        # Unpacked: packing 900 MB takes the host a minute a bundle, and packed chunks are
        # proven on the host (tests/firmware); the node fetches a few MB either way.
        bundle.make(image, shelf_dir / name, key=key, version=version, build=base.build,
                    commit=base.commit, boards=list(base.boards), compression="none")
        image.unlink()
        return name

    good, bad, later = publish("0.2.0"), publish("0.3.0", broken=True), publish("0.5.0")
    sizes = {name: (shelf_dir / name).stat().st_size for name in (good, bad, later)}

    def moved(cid: str, name: str, since: float) -> str:
        """What the install of `name` fetched, from the node's last answer with progress."""
        answers = [p for _, topic, p in hub.messages if p.get("id") == cid
                   and topic.endswith("/response") and (p.get("firmware") or {}).get("total")]
        last = (answers[-1]["firmware"] if answers else {})
        return (f"{last.get('downloaded', 0) / 1e6:.1f} MB of the {sizes[name] / 1e6:.0f} MB "
                f"bundle downloaded, {last.get('reused', 0) / 1e6:.0f} MB reused")

    with hub_broker(tmp_path) as broker:
        hub = Hub(broker)
        shelf = Shelf(shelf_dir)
        disk = qemu.prepare(card, tmp_path, _write(tmp_path / "node.yaml",
                                                   node_yaml(broker.port)),
                            extra_args="console=ttyAMA0", reporter=False)
        log = tmp_path / "console.log"
        vm = qemu.Machine(disk, log).start()
        try:
            # 1. the card as flashed: slot A, the image's release, the node connected
            t0 = time.monotonic()
            vm.expect("safecity-ab: booting slot A", 120)
            hub.online(base.version, BOOT_S, t0)
            table.add(f"the card as flashed ({base.version})", "boots A, node connected", 1,
                      time.monotonic() - t0)

            # 2. a good update: installed into B, one trial boot, committed, stays
            t = time.monotonic()
            cid, sent = hub.command("firmware.update", url=shelf.url(good))
            hub.response(cid, "accepted", 60, sent)
            seen = hub.wait("response", lambda p: p.get("id") == cid and (
                p.get("firmware") or {}).get("percent", 0) > 0, 300, sent)
            assert seen["firmware"]["slot"] == "B"
            vm.expect("safecity-ab: booting slot B (trial 1 of 3)", 900)
            done = hub.response(cid, ("done", "failed"), BOOT_S + 120, sent)
            assert done["status"] == "done", done
            hub.online("0.2.0", 60, sent)
            # Committed on the card: the next boot is B with no trial (booted in step 3).
            assert qemu.state(disk, tmp_path) | {"bootargs_extra": ""} == {
                "slot": "B", "upgrade_available": "0", "bootcount": "0", "bootlimit": "3",
                "bootargs_extra": ""}
            # The card came with root A's chunk index: the slot was not read whole to make it.
            assert not [line for line in vm.lines if "once to index its chunks" in line]
            table.add("good bundle 0.2.0: install into B, trial boot, commit", "committed, "
                      f"running B; {moved(cid, good, sent)}", 1, time.monotonic() - t)

            # 3. a bad update: its node never gets healthy; three tries, then back to B
            t = time.monotonic()
            cid, sent = hub.command("firmware.update", url=shelf.url(bad))
            hub.response(cid, "accepted", 60, sent)
            vm.expect("safecity-ab: booting slot A (trial 1 of 3)", 900)
            for n in (2, 3):
                vm.expect(f"safecity-ab: booting slot A (trial {n} of 3)", BOOT_S)
            vm.expect("back to slot B", BOOT_S)
            vm.expect("safecity-ab: booting slot B", 60)  # the committed slot: it stayed
            failed = hub.response(cid, ("done", "failed"), BOOT_S, sent)
            assert failed["status"] == "failed" and "rolled back" in failed["error"], failed
            hub.online("0.2.0", 60, sent)
            table.add("bad bundle 0.3.0 (node never healthy)", "3 trial boots of A, back on B "
                      f"by itself, reported failed; {moved(cid, bad, sent)}", 4,
                      time.monotonic() - t)

            # 4. power cut while installing: B comes back; the install starts again by itself
            t = time.monotonic()
            cid, sent = hub.command("firmware.update", url=shelf.url(later))
            hub.wait("response", lambda p: p.get("id") == cid and (
                p.get("firmware") or {}).get("percent", 0) >= 30, 900, sent)
            vm.kill()
            cut = time.monotonic()
            vm.start()
            vm.expect("safecity-ab: booting slot B", 120)
            hub.online("0.2.0", BOOT_S, cut)
            table.add("power cut during the install (at ≥ 30 %)", "back on B, install "
                      "started again", 1, time.monotonic() - t)

            # 5. power cut while committing: the node comes back on a good slot
            t = time.monotonic()
            vm.expect("safecity-ab: booting slot A (trial 1 of 3)", 900)
            vm.expect("committing slot A", BOOT_S)
            vm.kill()
            cut = time.monotonic()
            vm.start()
            line = vm.expect("safecity-ab: booting slot", 120)
            end = hub.response(cid, ("done", "failed"), BOOT_S + 120, sent)
            assert end["status"] == "done", end
            hub.online("0.5.0", 120, cut)
            table.add("power cut during the commit of 0.5.0", f"came back on "
                      f"{line.split('booting ', 1)[1]}, committed, running A; "
                      f"{moved(cid, later, sent)}", 2, time.monotonic() - t)
        finally:
            vm.kill()
            shelf.close()
            hub.close()
    text = table.render() + f"\n\nboots in all: {len(vm.boots)}; " + ", ".join(
        f"{b}" for _, b in vm.boots)
    (tmp_path / "scenarios.md").write_text(text + "\n")
    print("\n" + text)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
