"""OSError to ``UserError`` translation: it lives in ``device.contracts.oserrors``, which
``camtrap-cloud`` shares. This name stays for the agent's importers."""

from device.contracts.oserrors import *  # noqa: F403
