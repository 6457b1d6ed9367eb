"""The argparse plumbing the three programs share: optional subcommand modules, ``--debug``
anywhere on the line, usage errors in one line, bounded durations."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterable
from typing import NoReturn

from device.contracts.errors import one_line

__all__ = [
    "OneLineParser",
    "add_debug_flag",
    "register_optional",
    "seconds",
    "without_debug_flag",
]


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


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """The ``--debug`` flag every program has; ``errors.guarded`` reads it from argv."""
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, also print the traceback (or set CAMTRAP_DEBUG=1)",
    )


def without_debug_flag(argv: list[str] | None) -> list[str]:
    """``argv`` (default ``sys.argv[1:]``) without ``--debug``, so the flag works after a
    subcommand too (``camtrap classify DIR --debug``); ``guarded`` has already seen it."""
    args = sys.argv[1:] if argv is None else list(argv)
    if "--" in args:
        cut = args.index("--")
        return [a for a in args[:cut] if a != "--debug"] + args[cut:]
    return [a for a in args if a != "--debug"]


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr, exit 2 (``Exit.USAGE``).

    argparse prints the whole usage block before the error; in a terminal full of output, or a
    journal, the line that says what is wrong is what matters, and ``--help`` has the rest.
    Subparsers inherit the class (argparse makes them with ``type(parent)``).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def seconds(low: float, high: float) -> Callable[[str], float]:
    """An argparse ``type`` for a duration in seconds within ``[low, high]``: a negative or
    absurd timeout is a usage error, said before anything is touched."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} s is outside {low:g}-{high:g} s")
        return value

    return parse
