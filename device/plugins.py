"""The programs' argparse plumbing (optional subcommand modules, ``--debug``, one-line usage
errors): it lives in ``device.contracts.commandline``, which ``camtrap-cloud`` shares. This name
stays for the agent's importers."""

from device.contracts.commandline import *  # noqa: F403
