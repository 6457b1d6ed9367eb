"""Version numbers of packs and agents, parsed and ordered by ``packaging.version`` (PEP 440).

One parser for every comparison the two ends make: anti-rollback (a pack must be strictly
newer), ``min_agent_version``, and the versions the cloud signs. "1.0.10" is newer than
"1.0.9" (numbers, not text), "1.0" equals "1.0.0", and a pre-release ("1.1.0rc1") comes before
its release.
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

__all__ = ["Version", "newer", "parse_version"]


def parse_version(text: str) -> Version:
    """The version ``text`` names; ValueError, in one line, for anything else."""
    try:
        return Version(str(text))
    except InvalidVersion:
        raise ValueError(f"version {text!r} is not a version number (like 1.2.10)") from None


def newer(candidate: str, than: str | None) -> bool:
    """``candidate`` is strictly newer than ``than`` (anything is newer than nothing)."""
    return than is None or parse_version(candidate) > parse_version(than)
