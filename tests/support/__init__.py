"""Fixtures that start real services (mosquitto, the Pub/Sub emulator) for tests."""

import pytest

# Test modules import helpers from here before pytest loads them as plugins; registering first
# keeps pytest's assertion rewriting (and its quiet) for every module in this package.
pytest.register_assert_rewrite(
    "tests.support.broker",
    "tests.support.messages",
    "tests.support.ports",
    "tests.support.pubsub_emulator",
    "tests.support.uplink",
    "tests.support.provisioning",
)
