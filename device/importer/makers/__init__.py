"""Maker notes: the brand-specific block a trail camera writes into EXIF (burst sequence,
trigger, temperature, moon phase), read where the brand's layout is public and stable.

Only Reconyx publishes its layouts (HyperFire, UltraFire, HyperFire 2). Other brands
(Bushnell, Browning, Spypoint, ...) give standard EXIF only: their notes are not read.
"""

from __future__ import annotations

import struct

from device.importer.makers import reconyx
from device.importer.makers.facts import MOON_PHASES, CaptureMethod, MakerFacts, capture_method_for

__all__ = ["MOON_PHASES", "CaptureMethod", "MakerFacts", "capture_method_for", "read_maker_note"]


def read_maker_note(make: str | None, model: str | None, note: bytes) -> MakerFacts | None:
    """None for a brand/layout we do not read, or a note too short/damaged (never raises).

    ``model`` is not needed by any layout read today (Reconyx notes name their own layout);
    it is part of the call so a brand whose layout depends on the model can be added.
    """
    del model
    try:
        return reconyx.read(make, note)
    except (struct.error, ValueError, IndexError):
        # The readers check lengths first; this is the last guard for a note they misjudge,
        # so a damaged note costs its maker facts, never the photo.
        return None
