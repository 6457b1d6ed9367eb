"""An OSError about a named file, said as a ``UserError``: the path, the reason, an exit code.

The three programs' ``main`` turn any OSError that escapes a command and names a file into one
line (``camtrap: /media/usb/x.csv: No such file or directory``): a user gave the path, so it is
the user's to fix, not a bug. Commands that know whether a path was an input or an output say
so themselves (``Exit.NO_INPUT`` or ``Exit.CANT_CREATE``); this is the catch-all below them.
"""

from __future__ import annotations

import errno
import os

from device.contracts.errors import UserError, shown_path
from device.contracts.exitcodes import Exit

__all__ = ["user_error_from_os"]

# errnos that mean "nothing there to read"; every other error on a named path is taken as a
# failure to create or write it unless the path exists and cannot be read.
# (A name too long to exist is an input that is not there; as an output it is rarer.)
_MISSING = {errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG}
_WRITE = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EEXIST, errno.EISDIR}


def user_error_from_os(exc: OSError) -> UserError | None:
    """The UserError for ``exc``, or None when it names no file (then it is no user error)."""
    name = exc.filename
    if name is None:
        return None
    path = shown_path(os.fsdecode(name))
    reason = exc.strerror or str(exc)
    if exc.errno in _MISSING:
        code = Exit.NO_INPUT
    elif exc.errno in _WRITE:
        code = Exit.CANT_CREATE
    elif os.path.exists(path) and not os.access(path, os.R_OK):
        code = Exit.NO_INPUT
    else:
        code = Exit.CANT_CREATE
    if exc.filename2 is not None:
        return UserError(f"{path} -> {shown_path(os.fsdecode(exc.filename2))}: {reason}", code)
    return UserError(f"{path}: {reason}", code)
