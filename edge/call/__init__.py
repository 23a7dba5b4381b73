"""The call path: a press or a cabinet input becomes an alert (alarm.py), committed to the
durable outbox (outbox.py) and handed to the uplink at once; acks come back the same way."""
