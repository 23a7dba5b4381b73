"""The MQTT contract between a node and the hub: topics and JSON payloads, one source for both."""
