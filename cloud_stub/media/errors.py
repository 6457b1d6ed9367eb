"""What can go wrong with a media store, each said in one line with an exit code."""

from __future__ import annotations

from device.contracts.errors import UserError
from device.contracts.exitcodes import Exit


class MediaUnavailable(UserError):
    """The store cannot be reached or refuses: try again later (the ingest must not ack)."""

    def __init__(self, message: str, code: Exit | int = Exit.UNAVAILABLE) -> None:
        super().__init__(message, code)


class MediaMissing(UserError):
    """The store answered, and it has no object at that path."""

    def __init__(self, message: str) -> None:
        super().__init__(message, Exit.NO_INPUT)


class MediaPathError(UserError):
    """A relative path that would leave the store (absolute, ``..``) or names nothing."""

    def __init__(self, message: str) -> None:
        super().__init__(message, Exit.DATA_ERROR)
