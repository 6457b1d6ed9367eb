"""Optional subcommand modules: each part of the product adds its own commands if installed."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterable


def register_optional(sub: argparse._SubParsersAction, modules: Iterable[str]) -> None:
    """Call ``register(sub)`` of every module in ``modules`` that is installed.

    A module that is missing is skipped (that part is not installed); an import error
    *inside* an existing module is a bug and is raised.
    """
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not (exc.name and name.startswith(exc.name)):
                raise
            continue
        module.register(sub)
