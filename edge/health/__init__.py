"""The node's health: the verdict from the platform's readings (assess.py), the client
certificate's end (certificate.py), the heartbeat, the self-test and the watchdog check."""
