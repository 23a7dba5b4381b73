"""The node's link to the hub: the MQTT client (client.py), events and telemetry stored
across outages and forwarded in order (backlog.py), the hub's commands (commands.py, with
the ids already answered in commandlog.py) and the firmware desk (firmware.py)."""
