"""The one error the trainer raises for a problem the user can act on."""

from __future__ import annotations


class TrainingError(Exception):
    """Training cannot go on; the message is one line naming the input and the reason."""
