"""The node's application: config, the alarm path, the durable outbox and the uplink to the hub."""

__version__ = "0.1.0"
