"""Store-and-forward uplink: the outbox, its drain loop, and the MQTT / Pub/Sub transports."""
