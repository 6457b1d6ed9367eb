"""Measure the default pack's blank-threshold calibration table and write it into the pack.

Dev-time tool; runs in the project venv, after build_default_pack.py and after any change to
the engine's scoring (the table describes the scores of this code and this model together):

    cd /work/main && .venv/bin/python device/models/calibrate_default_pack.py   # or
    make calibrate-default-pack

The named set (``--set``):

- ``dev`` (the default, what the committed pack carries): the real photos of
  ``../shared/camtrap-dev`` (its labels.csv; events by its ``event`` column, sites by its
  ``dataset`` column), scored at the event level by the agent's own per-event path. Only the
  numbers of the table go into the pack, never a photo. Twenty photos (10 not-blank events)
  support no target: the 95% Wilson lower bound of 10/10 is 0.72, so every row is null and the
  default trap calls nothing blank until a deployment calibrates on its own photos. That is
  the point: the trap will meet cameras, sites and light it has never seen, and synthetic
  scenes do not stand in for them (a table measured on synthetic bursts put the threshold at
  0.20, which called a real black bear, a person and a vehicle blank).
- ``synthetic``: ``N_EVENTS`` synthetic bursts from ``device.hardware.scene`` with seed
  ``SEED``; about 500 not-blank events, enough for the bound to allow 0.98 (189 of 189 kept is
  the least that can). Kept for comparison (docs/vision.md); never the default.

Background learning runs at the manifest's stated threshold (a calibration never depends on
an earlier one, so a re-run of unchanged code gives a byte-identical table). Evaluation runs on
other sets (the synthetic seed 1; the dev set only leave-one-dataset-out).

It writes ``calibration.json`` into the pack (atomically), adds its sha256 and size to the
manifest's ``files`` and the manifest's ``calibration`` entry, reads the pack back to verify
it, and prints the table and the time it took.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from device.config import CameraSection, LocationSection, VisionSection  # noqa: E402
from device.contracts.durable import atomic_write  # noqa: E402
from device.contracts.pack import DEFAULT_PACK_DIR, file_entry  # noqa: E402
from device.vision.calibration import calibrate, format_table  # noqa: E402
from device.vision.engine import VisionEngine  # noqa: E402
from device.vision.evaluate import read_labels  # noqa: E402
from device.vision.event_eval import (  # noqa: E402
    EngineMaker,
    EvalEvent,
    items_at,
    labelled_events,
    run_events,
    synthetic_events,
)
from device.vision.pack import load_pack  # noqa: E402
from device.vision.sequences import plan_events  # noqa: E402

CALIBRATION_FILE = "calibration.json"
SEED = 1401
N_EVENTS = 1000
# Fixed, like the pack's own ``created``: the same scores give a byte-identical file.
CREATED = datetime.fromisoformat("2026-12-01T00:00:00+00:00")
SET_NAME = (
    f"synthetic bursts (device.hardware.scene) seed={SEED} n={N_EVENTS}, "
    "3 frames 1280x720 + 320x240 lores"
)


DEV_DIR = HERE.parents[2] / "shared" / "camtrap-dev"
DEV_NAME = (
    "camtrap-dev: 20 real photos from 5 LILA BC data sets (14 events, 3 of them real 3-frame"
    " Serengeti bursts)"
)


def dev_events(folder: Path) -> Iterator[EvalEvent]:
    """The dev set's events as ``camtrap calibrate DIR --events`` plans them."""
    samples = read_labels(folder / "labels.csv")
    plan = plan_events(samples, folder, VisionSection().sequence_cutoff_s, list(samples[0].columns))
    return labelled_events(plan.events, CameraSection().lores_size)


def measure(pack: Path, events: Iterable[EvalEvent], name: str) -> bytes:
    """The calibration table of ``pack`` on ``events``, as JSON bytes."""
    vision = VisionSection(pack=pack)
    engine = VisionEngine.load(pack, vision, LocationSection())
    maker = EngineMaker(engine, vision, LocationSection())
    scores = run_events(events, maker.uncalibrated)
    table = calibrate(
        items_at("event", scores),
        name=name,
        level="event",
        created=CREATED,
        classified_by=engine.classified_by,
    )
    print(format_table(table))
    return table.to_json()


def install(pack: Path, table: bytes) -> None:
    """``table`` as the pack's calibration.json, listed and referenced by its manifest."""
    atomic_write(pack / CALIBRATION_FILE, table)
    path = pack / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    files = {**manifest["files"], CALIBRATION_FILE: file_entry(table)}
    manifest["files"] = dict(sorted(files.items()))
    if "calibration" not in manifest:
        # Beside the other data files the manifest references (the order is cosmetic).
        items = list(manifest.items())
        keys = [key for key, _ in items]
        items.insert(keys.index("geofence") + 1 if "geofence" in keys else len(items),
                     ("calibration", None))  # fmt: skip
        manifest = dict(items)
    manifest["calibration"] = {"file": CALIBRATION_FILE}
    atomic_write(path, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    load_pack(pack)  # every checksum again, and the table through the contracts model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pack", type=Path, default=DEFAULT_PACK_DIR)
    parser.add_argument("--set", choices=("dev", "synthetic"), default="dev")
    parser.add_argument("--dev-dir", type=Path, default=DEV_DIR)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.set == "dev":
        if not (args.dev_dir / "labels.csv").is_file():
            print(f"calibrate_default_pack: {args.dev_dir}/labels.csv: not found", file=sys.stderr)
            return 66
        table = measure(args.pack, dev_events(args.dev_dir), DEV_NAME)
    else:
        table = measure(args.pack, synthetic_events(N_EVENTS, SEED), SET_NAME)
    install(args.pack, table)
    print(f"wrote {args.pack / CALIBRATION_FILE} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
