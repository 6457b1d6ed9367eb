"""Shared pytest configuration."""

pytest_plugins = [
    "tests.support.broker",
    "tests.support.pubsub_emulator",
    "tests.support.world",
]
