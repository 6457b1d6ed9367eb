"""``read_maker_note``: the Reconyx maker notes (HyperFire, UltraFire, HyperFire 2) a trail
camera writes into EXIF, and None for everything else.

Notes are written by tests/support/trailcam.py; the real HC550 and PC800 notes in
../shared/camtrap-dev check that those writers put each field where the cameras do.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from device.importer.makers import MOON_PHASES, MakerFacts, read_maker_note
from device.importer.makers.reconyx import HYPERFIRE2_SIZE, HYPERFIRE_SIZE, ULTRAFIRE_SIZE
from tests.support.trailcam import hyperfire2_note, hyperfire_note, ultrafire_note

DEV_SET = Path("/work/shared/camtrap-dev")
SHOT = datetime(2025, 1, 31, 23, 59, 58)

Writer = Callable[..., bytes]
LAYOUTS: list[tuple[str, Writer, int]] = [
    ("reconyx-hyperfire", hyperfire_note, HYPERFIRE_SIZE),
    ("reconyx-ultrafire", ultrafire_note, ULTRAFIRE_SIZE),
    ("reconyx-hyperfire2", hyperfire2_note, HYPERFIRE2_SIZE),
]
each_layout = pytest.mark.parametrize(
    ("layout", "write", "size"), LAYOUTS, ids=[layout for layout, _, _ in LAYOUTS]
)


def read(note: bytes, make: str | None = "RECONYX") -> MakerFacts | None:
    return read_maker_note(make, "HC600 HYPERFIRE", note)


def facts(note: bytes, make: str | None = "RECONYX") -> MakerFacts:
    found = read(note, make)
    assert found is not None
    return found


# -- what each layout gives -----------------------------------------------------------------


@each_layout
def test_every_public_field_written_is_read_back(layout, write, size):
    note = write(
        taken_at=SHOT,
        sequence=(3, 5),
        event_number=412,
        trigger="motion",
        temperature_c=-12,
        moon_phase="waning gibbous",
        serial="RCNX0042",
        label="RIDGE-NORTH",
    )
    got = facts(note)
    assert got.layout == layout
    assert got.sequence == (3, 5) and got.event_number == 412
    assert (got.trigger, got.capture_method) == ("motion", "activityDetection")
    assert got.temperature_c == -12.0
    assert got.moon_phase == "waning gibbous"
    assert got.serial == "RCNX0042"
    assert got.taken_at == SHOT
    assert got.fields["userLabel"] == "RIDGE-NORTH"
    assert got.fields["sequence"] == [3, 5]
    assert got.fields["dateTimeOriginal"] == "2025:01:31 23:59:58"
    assert json.loads(json.dumps(got.fields)) == got.fields


@each_layout
def test_time_lapse_photos_say_so_in_camtrap_dp_terms(layout, write, size):
    assert facts(write(taken_at=SHOT, trigger="timelapse")).capture_method == "timeLapse"


@pytest.mark.parametrize(
    ("trigger", "method"),
    [("external", "activityDetection"), ("codeloc_not_entered", None)],
)
def test_hyperfire_external_and_code_lock_triggers(trigger, method):
    got = facts(hyperfire_note(taken_at=SHOT, trigger=trigger))
    assert (got.trigger, got.capture_method) == (trigger, method)


def test_an_ultrafire_point_and_shoot_photo_has_no_capture_method():
    got = facts(ultrafire_note(taken_at=SHOT, trigger="point_and_shoot"))
    assert (got.trigger, got.capture_method) == ("point_and_shoot", None)


@each_layout
@pytest.mark.parametrize("phase", MOON_PHASES)
def test_each_moon_phase_reads_back(layout, write, size, phase):
    assert facts(write(taken_at=SHOT, moon_phase=phase)).moon_phase == phase


@pytest.mark.parametrize("write", [hyperfire_note, hyperfire2_note], ids=["hyperfire", "hf2"])
def test_event_numbers_span_two_words(write):
    assert facts(write(taken_at=SHOT, event_number=0x12345)).event_number == 0x12345


# -- which notes are read -------------------------------------------------------------------


def test_a_hyperfire_note_needs_a_reconyx_make_unless_its_firmware_is_the_early_one():
    later = hyperfire_note(taken_at=SHOT, firmware=(4, 1, 0))
    early = hyperfire_note(taken_at=SHOT, firmware=(3, 0, 1))
    assert read(later, make=None) is None  # 0xf101 alone is too weak a sign
    assert read(later, make="RECONYX") is not None
    assert read(later, make="reconyx ") is not None
    # Early HyperFire firmware left Make blank; its firmware word identifies it instead.
    assert read(early, make=None) is not None
    assert read(early, make="Bushnell") is not None


@pytest.mark.parametrize(
    "note",
    [
        b"",
        b"\x01",
        b"\x00" * 460,
        b"Nikon\x00\x02\x10\x00\x00" + b"\x00" * 200,
        b"RECONYXMF\x00" + b"\x00" * 200,
    ],
    ids=["empty", "one-byte", "all-zero", "nikon", "microfire"],
)
def test_notes_of_other_brands_and_unread_layouts_give_none(note):
    assert read(note) is None


@each_layout
def test_a_note_shorter_than_its_public_fields_gives_none(layout, write, size):
    note = write(taken_at=SHOT)
    assert read(note[:size]) is not None
    assert read(note[: size - 1]) is None


# -- damaged fields are left out, not trusted -----------------------------------------------


def test_impossible_sequence_date_moon_and_temperature_are_left_out_and_the_rest_kept():
    note = bytearray(hyperfire_note(taken_at=SHOT, sequence=(2, 3), event_number=9))
    struct.pack_into("<2H", note, 0x0E, 4, 2)  # "4 of 2"
    struct.pack_into("<H", note, 0x16 + 3 * 2, 13)  # month 13
    struct.pack_into("<H", note, 0x24, 9)  # moon phase 9
    struct.pack_into("<h", note, 0x26, 212)  # 212 F beside 20 C: the words disagree
    got = facts(bytes(note))
    assert (got.sequence, got.taken_at, got.moon_phase, got.temperature_c) == (None,) * 4
    for name in ("sequence", "dateTimeOriginal", "moonPhase", "ambientTemperatureC"):
        assert name not in got.fields
    assert got.event_number == 9 and got.trigger == "motion" and got.serial == "H600HH01234567"


@pytest.mark.parametrize("sequence", [(0, 0), (0, 3), (1, 0)])
def test_a_zero_in_the_sequence_is_no_sequence(sequence):
    assert facts(ultrafire_note(taken_at=SHOT, sequence=sequence)).sequence is None


def test_hyperfire_clock_words_written_big_endian_are_read_swapped():
    note = bytearray(hyperfire_note(taken_at=SHOT))
    clock = struct.unpack_from("<6H", note, 0x16)
    struct.pack_into(">6H", note, 0x16, *clock)
    assert facts(bytes(note)).taken_at == SHOT


def test_no_note_bytes_raise_and_every_result_is_json_safe():
    rng = random.Random(16)
    seeds = [
        write(taken_at=SHOT + timedelta(hours=i), sequence=(1, 3))
        for i, (_, write, _) in enumerate(LAYOUTS)
    ]
    cases: list[bytes] = []
    for base in seeds:
        for _ in range(300):
            damaged = bytearray(base)
            for _ in range(rng.randint(1, 12)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            cases.append(bytes(damaged))
        cases += [base[: rng.randrange(len(base))] for _ in range(50)]
        cases += [base[:10] + rng.randbytes(rng.randrange(200)) for _ in range(100)]
    read_some = 0
    for note in cases:
        got = read(note)
        if got is not None:
            json.dumps(got.fields)
            assert got.sequence is None or 1 <= got.sequence[0] <= got.sequence[1]
            assert got.moon_phase is None or got.moon_phase in MOON_PHASES
            read_some += 1
    assert read_some > 0


# -- real Reconyx photos --------------------------------------------------------------------

REAL_HYPERFIRE = ["ctai_blank", "ctai_vehicle", "ctai_domestic_cattle", "ctai_domestic_dog"]
needs_dev_set = pytest.mark.skipif(
    not DEV_SET.is_dir(), reason="../shared/camtrap-dev (real camera-trap photos) is absent"
)


def real_exif(name: str) -> tuple[dict[int, Any], dict[int, Any]]:
    with Image.open(DEV_SET / f"{name}.jpg") as image:
        exif = image.getexif()
        return dict(exif), dict(exif.get_ifd(0x8769))


def moon_age_phase(moment: datetime) -> float:
    """The moon's phase at ``moment`` in eighths of a synodic month from a known new moon."""
    new_moon = datetime(2000, 1, 6, 18, 14)
    synodic_days = 29.530588853
    age = ((moment - new_moon).total_seconds() / 86400) % synodic_days
    return age / synodic_days * 8


@needs_dev_set
@pytest.mark.parametrize("name", REAL_HYPERFIRE)
def test_real_hyperfire_notes_agree_with_the_photo_and_the_sky(name):
    main, sub = real_exif(name)
    model = main[0x0110].rstrip("\x00")
    got = read_maker_note(main[0x010F], model, sub[0x927C])
    assert got is not None and got.layout == "reconyx-hyperfire"
    # The note keeps its own clock: it must be the EXIF DateTimeOriginal.
    assert got.taken_at == datetime.strptime(sub[0x9003], "%Y:%m:%d %H:%M:%S")
    assert got.sequence is not None and 1 <= got.sequence[0] <= got.sequence[1] <= 10
    assert got.temperature_c is not None and -40 <= got.temperature_c <= 50
    assert got.capture_method == "activityDetection"
    # The serial reads as a Reconyx serial of that model (H550..., P800...).
    digits = "".join(ch for ch in model.split()[0] if ch.isdigit())
    assert got.serial is not None and got.serial[1:4] == digits
    # The moon phase the camera computed is the sky's, within one eighth (its rounding, the
    # camera's time zone).
    assert got.moon_phase is not None and got.taken_at is not None
    sky = moon_age_phase(got.taken_at)
    camera = MOON_PHASES.index(got.moon_phase)
    assert min(abs(sky - camera), 8 - abs(sky - camera)) <= 1.0


@needs_dev_set
@pytest.mark.parametrize("name", REAL_HYPERFIRE)
def test_the_writer_puts_each_field_where_the_real_cameras_do(name):
    main, sub = real_exif(name)
    real = read_maker_note(main[0x010F], None, sub[0x927C])
    assert real is not None and real.sequence is not None and real.taken_at is not None
    assert real.trigger is not None and real.moon_phase is not None and real.serial is not None
    assert real.temperature_c is not None and real.event_number is not None
    major, minor, patch = (int(part) for part in real.fields["firmwareVersion"].split("."))
    firmware = (major, minor, patch)
    written = read_maker_note(
        "RECONYX",
        None,
        hyperfire_note(
            taken_at=real.taken_at,
            sequence=real.sequence,
            event_number=real.event_number,
            trigger=real.trigger,
            temperature_c=int(real.temperature_c),
            moon_phase=real.moon_phase,
            serial=real.serial,
            label=real.fields["userLabel"],
            firmware=firmware,
            battery_mv=round(real.fields["batteryVoltage"] * 1000),
        ),
    )
    assert written is not None
    assert set(written.fields) == set(real.fields)
    for key in (
        "triggerMode",
        "sequence",
        "eventNumber",
        "dateTimeOriginal",
        "moonPhase",
        "ambientTemperatureC",
        "serialNumber",
        "userLabel",
        "firmwareVersion",
        "batteryVoltage",
    ):
        assert written.fields[key] == real.fields[key], key
    # Same length as the cameras' notes: the writer's photos carry EXIF of a real size.
    assert len(hyperfire_note(taken_at=real.taken_at)) == len(sub[0x927C])


@needs_dev_set
def test_an_early_pc800_note_without_make_is_read_by_its_firmware():
    main, sub = real_exif("ctai_american_black_bear")
    assert not str(main.get(0x010F) or "").strip("\x00 ")  # this copy lost its IFD0
    got = read_maker_note(None, None, sub[0x927C])
    assert got is not None and got.fields["firmwareVersion"].startswith("3.")
    assert got.taken_at is not None and 2005 <= got.taken_at.year <= 2025
    assert got.sequence is not None and got.sequence[0] <= got.sequence[1]
    assert got.serial is not None and got.serial.startswith("P800")


@needs_dev_set
def test_serengeti_all_zero_notes_give_none():
    for path in sorted(DEV_SET.glob("serengeti_*.jpg")):
        with Image.open(path) as image:
            sub = image.getexif().get_ifd(0x8769)
            assert read_maker_note(None, None, sub[0x927C]) is None, path.name
