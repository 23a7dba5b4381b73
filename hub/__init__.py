"""The hub console: what a hub engineer runs to watch the poles, acknowledge their alerts and
ask them for evidence clips.

state.py holds what the hub knows, with no I/O: the per-pole records (nodes.py), the alerts
book (alerts.py), the tracked objects (objects.py) and garbage; clips.py the clips asked for
and the poles' answers; events.py the lines told to the operator; stats.py percentiles and
spans. view.py draws it with rich, from the tables in view_tables.py and view_pole.py;
client.py is the MQTT client (HubConsole); evidence.py the evidence store clips are uploaded
to, and their check; console.py connects it to the broker and is the `edge-hub` command.
"""
