"""Simulated pole devices for the demo and the tests: the PTZ head, the GPS receiver and the
Modbus bus, each on a pty pair or a socket, speaking the real protocol; and the client that
works the GPIO pins a node simulates (`devkit.simulators.gpio`)."""
