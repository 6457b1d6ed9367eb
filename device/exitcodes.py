"""The exit-code table of the three programs: it lives in ``device.contracts.exitcodes``,
which ``camtrap-cloud`` shares. This name stays for the agent's importers."""

from device.contracts.exitcodes import *  # noqa: F403
