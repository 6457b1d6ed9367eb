"""What a trap says it serves, split into its parts.

A trap's heartbeat (``model_version``) and every machine observation (``classified_by``) name
the model as ``name@version`` for a full pack, or ``backbone@version+head@version`` when a head
serves on a backbone (device.contracts.manifest ``Manifest.classified_by``). The fleet page,
the report and ``model publish`` read it here, so the format is parsed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

HEAD_JOIN = "+"


@dataclass(frozen=True)
class Serving:
    """``backbone``: the model the trap runs (a full pack, or the backbone under a head);
    ``head``: the head applied to its embedding, or None."""

    backbone: str
    head: str | None = None

    @property
    def classified_by(self) -> str:
        return self.backbone if self.head is None else f"{self.backbone}{HEAD_JOIN}{self.head}"


def parse_serving(text: str | None) -> Serving | None:
    """``name@v`` or ``backbone@v+head@v`` -> Serving; None for nothing reported."""
    if not text or not text.strip():
        return None
    backbone, join, head = text.strip().partition(HEAD_JOIN)
    return Serving(backbone=backbone, head=head if join and head else None)
