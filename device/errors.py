"""User-facing errors (``UserError``, ``guarded``): they live in ``device.contracts.errors``,
which ``camtrap-cloud`` shares. This name stays for the agent's importers."""

from device.contracts.errors import *  # noqa: F403
