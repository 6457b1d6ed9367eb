"""Trail-camera JPEGs for tests, written by the project itself: small seeded pixels and the
EXIF a trail camera writes (DateTimeOriginal, SubSecTimeOriginal, OffsetTimeOriginal, Make,
Model, BodySerialNumber), with a Reconyx maker note where a test asks for one.

The maker notes put every public field at the offset a real camera does (the HC550 and PC800
notes in ../shared/camtrap-dev parse the same way, tests/test_import_makers.py checks it); the
rest of the block, the vendor's private part, is left zero.

``taken_at`` may also be a string, written verbatim, for the quirks cameras produce
("0000:00:00 00:00:00", NUL padding, garbage).
"""

from __future__ import annotations

import io
import struct
from datetime import datetime

import numpy as np
from PIL import Image

from device.importer.makers import MOON_PHASES
from device.importer.makers.reconyx import (
    HYPERFIRE2_MAGIC,
    HYPERFIRE2_SIZE,
    HYPERFIRE_SIZE,
    HYPERFIRE_VERSION,
    ULTRAFIRE_MAGIC,
    ULTRAFIRE_SIZE,
)

TAG_MAKE = 0x010F
TAG_MODEL = 0x0110
TAG_DATETIME = 0x0132
TAG_EXIF_IFD = 0x8769
TAG_MAKER_NOTE = 0x927C
TAG_BODY_SERIAL = 0xA431
# (time, sub-second, offset) tags of each time a camera may write.
TIME_TAGS = {
    "DateTimeOriginal": (0x9003, 0x9291, 0x9011),
    "DateTimeDigitized": (0x9004, 0x9292, 0x9012),
}

# The length of the maker note the HC550/PC800 write; beyond the public fields it is private.
HYPERFIRE_NOTE_LENGTH = 1541
TRIGGER_CODES = {
    "motion": b"M",
    "timelapse": b"T",
    "external": b"E",
    "codeloc_not_entered": b"C",
    "point_and_shoot": b"P",
}


def exif_time(moment: datetime) -> str:
    return moment.strftime("%Y:%m:%d %H:%M:%S")


def pixels(size: tuple[int, int], seed: int) -> Image.Image:
    """A gradient with seeded noise: every seed gives different pixels, so different sha256s."""
    width, height = size
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 200, width, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 25, (height, width, 3)).astype(np.float32)
    tint = rng.uniform(-30, 30, 3).astype(np.float32)
    array = np.clip(ramp + noise + tint, 0, 255).astype(np.uint8)
    return Image.fromarray(array, "RGB")


def trailcam_jpeg(
    *,
    taken_at: datetime | str | None,
    subsec: str | None = None,
    offset: str | None = None,
    make: str | None = "RECONYX",
    model: str | None = "HC600 HYPERFIRE",
    serial: str | None = None,
    maker_note: bytes | None = None,
    size: tuple[int, int] = (64, 48),
    seed: int = 0,
    time_tag: str = "DateTimeOriginal",
    modified_at: datetime | None = None,
) -> bytes:
    """One photo as a trail camera's card holds it. ``modified_at`` writes DateTime (0x132),
    the time an editor last saved the file, which a reader must never take for the shot."""
    exif = Image.Exif()
    if make is not None:
        exif[TAG_MAKE] = make
    if model is not None:
        exif[TAG_MODEL] = model
    if modified_at is not None:
        exif[TAG_DATETIME] = exif_time(modified_at)
    sub = exif.get_ifd(TAG_EXIF_IFD)
    time, subsec_tag, offset_tag = TIME_TAGS[time_tag]
    if taken_at is not None:
        sub[time] = taken_at if isinstance(taken_at, str) else exif_time(taken_at)
    if subsec is not None:
        sub[subsec_tag] = subsec
    if offset is not None:
        sub[offset_tag] = offset
    if serial is not None:
        sub[TAG_BODY_SERIAL] = serial
    if maker_note is not None:
        sub[TAG_MAKER_NOTE] = maker_note
    out = io.BytesIO()
    pixels(size, seed).save(out, format="JPEG", quality=85, exif=exif.tobytes())
    return out.getvalue()


def _moon(moon_phase: str) -> int:
    return MOON_PHASES.index(moon_phase)


def _fahrenheit(celsius: int) -> int:
    return round(celsius * 9 / 5 + 32)


def _fixed(text: str, size: int, encoding: str = "ascii") -> bytes:
    raw = text.encode(encoding)[:size]
    return raw + b"\x00" * (size - len(raw))


def hyperfire_note(
    *,
    taken_at: datetime,
    sequence: tuple[int, int] = (1, 1),
    event_number: int = 1,
    trigger: str = "motion",
    temperature_c: int = 20,
    moon_phase: str = "full",
    serial: str = "H600HH01234567",
    label: str = "CAMTRAP",
    firmware: tuple[int, int, int] = (4, 1, 0),
    battery_mv: int = 8150,
    length: int = HYPERFIRE_NOTE_LENGTH,
) -> bytes:
    """A HyperFire maker note (HC500/HC550/HC600/PC800/PC900): int16u words, little-endian."""
    t = taken_at
    note = bytearray(max(length, HYPERFIRE_SIZE))
    struct.pack_into("<H3H2H", note, 0x00, HYPERFIRE_VERSION, *firmware, 0x2015, 0x0317)
    note[0x0C:0x0E] = _fixed(TRIGGER_CODES[trigger].decode(), 2)
    struct.pack_into("<2H2H", note, 0x0E, *sequence, event_number >> 16, event_number & 0xFFFF)
    struct.pack_into("<6H", note, 0x16, t.second, t.minute, t.hour, t.month, t.day, t.year)
    # 0x22 is a word ExifTool does not name (the cameras write the day of the week there).
    struct.pack_into("<H", note, 0x22, (t.isoweekday() % 7) + 1)
    struct.pack_into(
        "<Hhh", note, 0x24, _moon(moon_phase), _fahrenheit(temperature_c), temperature_c
    )
    note[0x2A:0x48] = _fixed(serial, 30, "utf-16-le")
    # contrast, brightness, sharpness, saturation, IR illuminator, sensitivity, battery (mV)
    struct.pack_into("<7H", note, 0x48, 128, 0, 32, 154, 1, 100, battery_mv)
    note[0x56:0x6C] = _fixed(label, 22)
    return bytes(note)


def ultrafire_note(
    *,
    taken_at: datetime,
    sequence: tuple[int, int] = (1, 1),
    event_number: int = 1,
    trigger: str = "motion",
    temperature_c: int = 20,
    moon_phase: str = "full",
    serial: str = "UF0123456789ABC",
    label: str = "CAMTRAP",
    battery_mv: int = 6020,
) -> bytes:
    """An UltraFire maker note: ``RECONYXUF\\0``, then byte/word fields, little-endian."""
    t = taken_at
    note = bytearray(ULTRAFIRE_SIZE)
    note[0:10] = ULTRAFIRE_MAGIC
    # makernote id, makernote size, public structure id, public structure size
    struct.pack_into("<IHIH", note, 0x0A, 0x00020000, ULTRAFIRE_SIZE, 0x7F100001, 0x5D)
    for at in (0x18, 0x1F, 0x26, 0x2D):  # firmware, micro 1, boot loader, micro 2 versions
        struct.pack_into("<BBHBBc", note, at, 0x01, 0x02, 0x2011, 0x03, 0x15, b"A")
    struct.pack_into("<cBBI", note, 0x34, TRIGGER_CODES[trigger], *sequence, event_number)
    struct.pack_into("<5BH", note, 0x3B, t.second, t.minute, t.hour, t.day, t.month, t.year)
    struct.pack_into("<B", note, 0x42, t.isoweekday() % 7)  # 0 = Sunday
    struct.pack_into(
        "<BhhBH",
        note,
        0x43,
        _moon(moon_phase),
        _fahrenheit(temperature_c),
        temperature_c,
        1,
        battery_mv,
    )
    note[0x4B:0x5A] = _fixed(serial, 15)
    note[0x5A:0x6F] = _fixed(label, 21)
    return bytes(note)


def hyperfire2_note(
    *,
    taken_at: datetime,
    sequence: tuple[int, int] = (1, 1),
    event_number: int = 1,
    trigger: str = "motion",
    temperature_c: int = 20,
    moon_phase: str = "full",
    serial: str = "HF2X0123456789A",
    label: str = "CAMTRAP",
    file_number: int = 1,
    directory_number: int = 100,
) -> bytes:
    """A HyperFire 2 maker note: ``RECONYXH2\\0``, then int16u words, little-endian."""
    t = taken_at
    note = bytearray(HYPERFIRE2_SIZE)
    note[0:10] = HYPERFIRE2_MAGIC
    struct.pack_into("<2H", note, 0x10, file_number, directory_number)
    struct.pack_into("<3H2H", note, 0x2A, 1, 8, ord("b"), 0x2019, 0x0611)
    note[0x34:0x36] = _fixed(TRIGGER_CODES[trigger].decode(), 2)
    struct.pack_into("<2H2H", note, 0x36, *sequence, event_number >> 16, event_number & 0xFFFF)
    struct.pack_into("<6H", note, 0x3E, t.second, t.minute, t.hour, t.day, t.month, t.year)
    struct.pack_into("<H", note, 0x4A, t.isoweekday() % 7)
    struct.pack_into(
        "<Hhh", note, 0x4C, _moon(moon_phase), _fahrenheit(temperature_c), temperature_c
    )
    struct.pack_into("<H", note, 0x5A, 1)  # flash on
    struct.pack_into("<H", note, 0x60, 100)  # motion sensitivity
    note[0x68:0x7E] = _fixed(label, 22)
    note[0x7E:0x9C] = _fixed(serial, 30, "utf-16-le")
    return bytes(note)
