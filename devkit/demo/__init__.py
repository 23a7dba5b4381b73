"""`edge-demo`: the whole alarm path on one machine, unattended, in about a minute.

A real Mosquitto (LocalBroker), a real node process on simulated pins and simulated serial
devices (a Pelco-D PTZ head, a GPS receiver, a Modbus climate sensor and UPS, each on a
pty), and the hub console in this process with auto-ack. The PTZ head patrols its presets;
a scripted citizen presses the call button through the pin simulator, and the head turns to
the button while the floodlight comes on; the cabinet's tamper switch trips once; the cabinet
heats up until its fan runs; the mains fail and the pole reports itself on battery; and the
broker is stopped and restarted so a call made during the outage is seen reaching the hub
once the link returns. The node records its camera (the sample video as H.264, as an IP
camera sends it); the hub asks it for the clip around the first call, which the node uploads
to the hub's evidence store, and checks the clip against its signed manifest. Ends with a
summary of what the hub received; exit 0 only if every press and contact change reached the
hub once, was acknowledged, no sequence number is missing, the clip arrived and verified,
the pole's hardware did as configured, and the node stopped cleanly.

pole.py runs the node process and drives its pins; devices.py starts the simulated serial
devices; script.py is the scripted presses, tamper trip and outage, with their narration;
hardware.py the PTZ, relay, climate and power steps; clip.py asks for the clip and checks it;
footage.py fetches the sample video and makes its H.264 copy; summary.py counts what
reached the hub and prints the summary; app.py starts broker, node, console and evidence
store, draws the live view and is the `edge-demo` command (`main`, also
`python -m devkit.demo`).
"""

from devkit.demo.app import main

__all__ = ["main"]
