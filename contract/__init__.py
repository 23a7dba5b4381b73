"""The MQTT contract between a node and the hub: topics and JSON payloads, one source for both.

Imported by the pole (edge) and by the hub; imports neither."""

__version__ = "0.1.0"  # the contract's version, in the AsyncAPI document's info
