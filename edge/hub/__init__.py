"""The hub console: what a hub engineer runs to watch the poles and acknowledge their alerts.

state.py holds what the hub knows (nodes, alerts, garbage), with no I/O; view.py draws it
with rich; console.py connects it to the broker and is the `edge-hub` command.
"""
