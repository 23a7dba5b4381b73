"""Runs inside the booted image (kernel command line systemd.run=): starts the normal boot's
units, waits for the node's READY=1, reads its retained status from the local broker and
prints both on the serial console for the test on the host, then the guest powers off."""

import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt

DEADLINE = time.monotonic() + 240


def show(unit: str, *props: str) -> dict[str, str]:
    out = subprocess.run(["systemctl", "show", unit, *(f"--property={p}" for p in props)],
                         capture_output=True, text=True, check=False).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def say(*words: object) -> None:
    print("EDGE-TEST", *words, flush=True)


subprocess.run(["systemctl", "start", "--no-block", "multi-user.target", "mosquitto.service"],
               check=False)
while True:
    state = show("edge-node.service", "ActiveState", "SubState", "ActiveEnterTimestampMonotonic",
                 "ConditionResult")
    if state.get("ActiveState") == "active":
        break
    if time.monotonic() > DEADLINE:
        say("TIMEOUT", json.dumps(state))
        subprocess.run(["journalctl", "-b", "--no-pager", "-n", "80"], check=False)
        sys.exit(1)
    time.sleep(0.5)
say("READY", f"monotonic_us={state['ActiveEnterTimestampMonotonic']}")
# Where the boot went, for the docs: when each step of the way to the node was reached (the
# boot is not "finished" while this runs, so systemd-analyze has no critical chain yet).
for unit in ("sysinit.target", "basic.target", "network.target", "mosquitto.service",
             "edge-node.service"):
    times = show(unit, "InactiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic")
    start, up = (int(times.get(k) or 0) / 1e6 for k in ("InactiveExitTimestampMonotonic",
                                                        "ActiveEnterTimestampMonotonic"))
    say("CHAIN", f"{unit}: started {start:.1f} s, active {up:.1f} s ({up - start:.1f} s)")

got: dict[str, object] = {}
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="boot-test-reader")
client.on_connect = lambda c, *_: c.subscribe("poles/+/status", qos=1)
client.on_message = lambda _c, _u, msg: got.setdefault("status", msg.payload.decode())
while "status" not in got and time.monotonic() < DEADLINE:
    try:
        client.connect("127.0.0.1", 1883)
        client.loop_start()
        break
    except OSError:
        time.sleep(0.5)
while "status" not in got and time.monotonic() < DEADLINE:
    time.sleep(0.2)
client.loop_stop()
say("STATUS", got.get("status", "none"))
facts = {
    "root": subprocess.run(["findmnt", "-no", "OPTIONS", "/"], capture_output=True,
                           text=True, check=False).stdout.strip(),
    "machine_id": Path("/etc/machine-id").read_text().strip(),
    "saved_machine_id": Path("/data/machine-id").read_text().strip(),
    "provisioned": subprocess.run(["ls", "/var/lib/edge"], capture_output=True, text=True,
                                  check=False).stdout.split(),
    "failed_units": subprocess.run(["systemctl", "--failed", "--plain", "--no-legend"],
                                   capture_output=True, text=True, check=False).stdout.split("\n"),
}
# What the node's venv can import: the pole's packages, and none of the hub, the dev-kit,
# provisioning or the console library they use.
facts["distributions"] = sorted({(d.metadata["Name"] or "").lower()
                                 for d in importlib.metadata.distributions()})
facts["importable"] = {name: importlib.util.find_spec(name) is not None
                       for name in ("edge", "contract", "drivers", "firmware", "hub", "devkit",
                                    "provisioning", "rich")}
say("FACTS", json.dumps(facts))
sys.exit(0 if "status" in got else 1)
