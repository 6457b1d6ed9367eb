"""Golden images for a head: held-out frames the quantised head gets right.

The trap's self-test (device/vision/engine.py ``self_test``) decodes each golden image whole,
frames it by the resize mode and expects its label in the top ``top_k``. A golden image is
therefore the trap's full crop of a frame, already cut and resampled to the model's input
size and saved as a JPEG, so the self-test feeds the head the same pixels (up to the JPEG
round trip, which is checked here: a frame is only chosen when its re-encoded image still
gives the right top class).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from cloud_stub.handoff.records import rank
from cloud_stub.training.classes import TrainClass
from cloud_stub.training.embeddings import Embedder
from cloud_stub.training.labelled import LabelledImage
from device.contracts.head import HeadWeights

__all__ = ["GOLDEN_QUALITY", "Golden", "choose_golden"]

GOLDEN_QUALITY = 75
MAX_GOLDEN = 2
MAX_TRIES = 64  # frames looked at, at most: each costs a decode and an invoke


@dataclass(frozen=True)
class Golden:
    file: str  # inside the pack
    jpeg: bytes
    expect: str  # the class's display name (what the self-test compares)
    top_k: int
    source: str  # the frame it was cut from


def _encoded(embedder: Embedder, image: LabelledImage) -> bytes | None:
    crop = embedder.crop_or_reason(image.path)
    if isinstance(crop, str):
        return None
    out = io.BytesIO()
    Image.fromarray(crop).save(out, format="JPEG", quality=GOLDEN_QUALITY)
    return out.getvalue()


def choose_golden(
    candidates: Sequence[LabelledImage],
    classes: Sequence[TrainClass],
    head: HeadWeights,
    embedder: Embedder,
    seed: int,
) -> list[Golden]:
    """Up to two frames, one not blank and one blank when there are both, in a seeded order
    (none when the head gets none of the first ``MAX_TRIES`` right)."""
    index = {c.name: i for i, c in enumerate(classes)}
    # The self-test is only a test when its top k leaves some class out.
    top_k = min(3, max(1, len(classes) - 1))
    chosen: list[Golden] = []
    wanted = [True, False]  # first a not-blank frame, then a blank one
    eligible = [i for i in candidates if i.cls.name in index]
    ordered = sorted(eligible, key=lambda i: rank(seed, f"golden\x00{i.key}"))
    tries = 0
    for image in ordered:
        if not wanted or tries == MAX_TRIES:
            break
        if image.cls.not_blank not in wanted:
            continue
        tries += 1
        jpeg = _encoded(embedder, image)
        if jpeg is None:
            continue
        probabilities = head.apply(embedder.run_golden(jpeg).embedding)
        if int(probabilities.argmax()) != index[image.cls.name]:
            continue
        wanted.remove(image.cls.not_blank)
        chosen.append(
            Golden(
                f"golden/{len(chosen)}-{image.cls.label_id[:8]}.jpg",
                jpeg,
                image.cls.display.replace(";", ","),
                top_k,
                image.key,
            )
        )
    return chosen
