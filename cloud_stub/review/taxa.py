"""The taxa a reviewer can pick: the current model pack's taxonomy, plus anything typed in."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from device.contracts.pack import DEFAULT_PACK_DIR, read_pack
from device.contracts.taxa import ancestor_key, key_level, scientific_name_of

# Ranks from the most to the least specific, for sorting a search's results.
_RANK_ORDER = {"species": 0, "genus": 1, "family": 2, "order": 3, "class": 4, "kingdom": 5}


@dataclass(frozen=True)
class Choice:
    """One pickable taxon, in the shape a human observation stores it."""

    scientific_name: str
    common_name: str | None
    taxon_level: str | None
    taxonomy: str | None  # the pack's five-field key (class;order;family;genus;species)

    @property
    def display(self) -> str:
        """The text shown in (and submitted by) the searchable list; unique per choice."""
        level = f" ({self.taxon_level})" if self.taxon_level else ""
        common = f" — {self.common_name}" if self.common_name else ""
        return f"{self.scientific_name}{common}{level}"


class TaxonList:
    """Every animal taxon of a pack and each of its ancestors, searchable by any name."""

    def __init__(self, choices: list[Choice]) -> None:
        self.choices = sorted(
            choices, key=lambda c: (_RANK_ORDER.get(c.taxon_level or "", 9), c.scientific_name)
        )
        self._lookup: dict[str, Choice] = {}
        # Later entries never shadow earlier ones: a species' own name beats a namesake.
        for choice in self.choices:
            for name in (choice.display, choice.scientific_name, choice.common_name):
                if name:
                    self._lookup.setdefault(name.casefold(), choice)

    @classmethod
    def from_pack(cls, pack_path: Path | None = None) -> TaxonList:
        pack = read_pack(pack_path or DEFAULT_PACK_DIR)
        by_key: dict[str, Choice] = {}
        for taxon in pack.taxa:
            if taxon.kind != "animal" or not any(taxon.taxonomy):
                continue
            own = ";".join(taxon.taxonomy)
            first = by_key.setdefault(
                own,
                Choice(
                    scientific_name=taxon.scientific_name or scientific_name_of(own),
                    common_name=taxon.common_name,
                    taxon_level=taxon.rank or key_level(own),
                    taxonomy=own,
                ),
            )
            if first.common_name != taxon.common_name:
                # Labels sharing a taxon but not a common name (ImageNet's five cat breeds are
                # all Felis catus): naming the species after one breed would be wrong, as the
                # trap's engine rules too.
                by_key[own] = replace(first, common_name=None)
            # Ancestors let a reviewer say "a cat, species unsure" (Felidae) without typing.
            for level in ("genus", "family", "order", "class"):
                key = ancestor_key(taxon.taxonomy, level)
                if key and key not in by_key:
                    by_key[key] = Choice(scientific_name_of(key), None, level, key)
        return cls(list(by_key.values()))

    def resolve(self, text: str) -> Choice | None:
        """The choice named by ``text`` (display string, scientific or common name), or a new
        free-text taxon when nothing matches; None for empty input."""
        text = " ".join(text.split())
        if not text:
            return None
        known = self._lookup.get(text.casefold())
        if known is not None:
            return known
        return Choice(scientific_name=text[:255], common_name=None, taxon_level=None, taxonomy=None)

    def search(self, query: str, limit: int = 50) -> list[Choice]:
        words = query.casefold().split()
        if not words:
            return self.choices[:limit]
        hits = [c for c in self.choices if all(w in c.display.casefold() for w in words)]
        return hits[:limit]
