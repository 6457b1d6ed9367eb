"""User-facing errors: one line on stderr naming the thing and the reason, and an exit code.

Every command of the three programs raises ``UserError`` for a problem the user can act on
(a missing file, an unreadable card, an unreachable host). ``guarded`` wraps a program's
``main``: a ``UserError`` becomes its one line; anything else is a bug and still becomes one
line, which says how to see the traceback (``--debug`` or ``CAMTRAP_DEBUG=1``).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from device.contracts.exitcodes import Exit

__all__ = [
    "DEBUG_ENV",
    "UserError",
    "debug_requested",
    "guarded",
    "one_line",
    "shown_path",
]

DEBUG_ENV = "CAMTRAP_DEBUG"


class UserError(Exception):
    """A problem the user can fix, said in one line; ``code`` is the process exit code."""

    def __init__(self, message: str, code: Exit | int = Exit.USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = int(code)


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(text: str) -> str:
    """Collapse a message to one line (OS and library errors sometimes carry newlines)."""
    return " ".join(str(text).split())


def shown_path(path: Path | str, limit: int = 160) -> str:
    """A path for a one-line message: a pasted-in megabyte of text is cut in the middle."""
    text = str(path)
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]}…{text[-keep:]} ({len(text)} characters)"


def guarded(
    prog: str,
    main: Callable[[list[str] | None], int],
    argv: list[str] | None = None,
    err: TextIO | None = None,
) -> int:
    """Run ``main(argv)`` and turn every exception into one line and an exit code."""
    err = err or sys.stderr
    debug = debug_requested(argv)
    try:
        return int(main(argv) or 0)
    except UserError as exc:
        if debug:
            traceback.print_exc(file=err)
        print(f"{prog}: {one_line(exc.message)}", file=err)
        return exc.code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=err)
        return int(Exit.INTERRUPTED)
    except BrokenPipeError:
        # `camtrap status | head`: the reader left; nothing to say to anyone.
        return int(Exit.OK)
    except SystemExit:
        raise
    except Exception as exc:
        if debug:
            traceback.print_exc(file=err)
        where = _where(exc)
        print(
            f"{prog}: internal error: {type(exc).__name__}: {one_line(str(exc))}{where}"
            f" (a bug; run with --debug or {DEBUG_ENV}=1 for the traceback)",
            file=err,
        )
        return int(Exit.SOFTWARE)


def _where(exc: BaseException) -> str:
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return ""
    code = last.tb_frame.f_code
    return f" at {os.path.basename(code.co_filename)}:{last.tb_lineno}"
