"""The pole's hardware beyond the call button: cabinet inputs, relays, the climate rules,
the PTZ head, the GPS receiver and the Modbus sensors."""
