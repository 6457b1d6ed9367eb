"""The wire protocol, version 1: it lives in ``device.contracts.protocol``, which the cloud
shares. This name stays so the agent's many importers keep working; new code imports from
``device.contracts.protocol``."""

from device.contracts.protocol import *  # noqa: F403
