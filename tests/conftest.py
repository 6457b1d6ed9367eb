"""Shared pytest configuration."""

pytest_plugins = [
    # First: the own-world guard (tests.support.ports) checks every connection from the start.
    "tests.support.ports",
    "tests.support.broker",
    "tests.support.pubsub_emulator",
    "tests.support.postgres",
    "tests.support.gcs_emulator",
    "tests.support.world",
    # Groups and order for pytest-xdist workers (a serial run is left as it is).
    "tests.support.parallel",
    "pytester",
]
