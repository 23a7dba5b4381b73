"""The hub console: what a hub engineer runs to watch the poles, acknowledge their alerts and
ask them for evidence clips.

state.py holds what the hub knows (nodes, alerts, objects, garbage), with no I/O; clips.py
the clips asked for and the poles' answers; view.py draws it with rich; client.py is the
MQTT client (HubConsole); evidence.py the evidence store clips are uploaded to, and their
check; console.py connects it to the broker and is the `edge-hub` command.
"""
