"""Which dataset categories are useless for training a species classifier.

Category names in camera-trap metadata (LILA's WCS set among them) include bookkeeping rows
(``start``, ``end``), failures (``misfire``) and non-answers (``unknown``, ``unidentifiable``,
Spanish ``... desconocido``). A pattern is an exact name, ``prefix*`` or ``*suffix``, compared
case-insensitively after trimming spaces. Google's sample meant to drop the prefix/suffix
families too, but its filter kept them; here they are dropped, and the list is configurable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DROP = (
    "#ref!",
    "empty",
    "end",
    "misfire",
    "small mammal",
    "start",
    "unidentifiable",
    "unidentified",
    "unknown",
    "unknown *",
    "* desconocido",
    "* desconocida",
)


@dataclass(frozen=True)
class DropList:
    exact: frozenset[str]
    prefixes: tuple[str, ...]
    suffixes: tuple[str, ...]

    @classmethod
    def of(cls, patterns: Iterable[str]) -> DropList:
        exact, prefixes, suffixes = set(), [], []
        for raw in patterns:
            pattern = raw.strip().lower()
            if not pattern:
                continue
            if pattern.endswith("*") and not pattern.startswith("*"):
                prefixes.append(pattern[:-1])
            elif pattern.startswith("*") and not pattern.endswith("*"):
                suffixes.append(pattern[1:])
            else:
                exact.add(pattern)
        return cls(frozenset(exact), tuple(prefixes), tuple(suffixes))

    def drops(self, category: str) -> bool:
        name = category.strip().lower()
        return name in self.exact or name.startswith(self.prefixes) or name.endswith(self.suffixes)

    def patterns(self) -> list[str]:
        return (
            sorted(self.exact) + [p + "*" for p in self.prefixes] + ["*" + s for s in self.suffixes]
        )


def read_patterns(path: Path) -> list[str]:
    """One pattern per line; blank lines are ignored (``#ref!`` is a category, not a comment)."""
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
