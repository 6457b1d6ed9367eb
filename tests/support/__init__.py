"""Fixtures that start real services (mosquitto, the Pub/Sub emulator) for tests."""
