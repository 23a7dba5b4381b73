"""Putting poles into service: the city's certificate authority, the node and broker
certificates (`edge-pki`). Runs on the technician's laptop or the city's signing machine."""
