"""What one trail-camera photo says about itself: when it was taken by the camera's clock,
which camera took it, and what the camera's maker note adds (burst sequence, trigger, ...).

Only reads: the bytes are the card's file, stored as they are, so nothing here re-encodes or
rewrites them. The pixels are not decoded either (vision decodes them later); a card of
10,000 photos is read in the time Pillow takes to parse 10,000 headers.

A file that is not an importable photo raises ``PhotoProblem`` with one line of reason and a
stable ``kind``; nothing else is ever raised, whatever the bytes.

**Time.** DateTimeOriginal (with SubSecTimeOriginal, and OffsetTimeOriginal when present);
DateTimeDigitized (with its own SubSec/Offset tags) only when DateTimeOriginal is absent or
blank. Never DateTime (0x132, the time the file was last changed) and never the file's mtime:
a photo with neither tag is not given a time. An unset clock ("0000:00:00 00:00:00") or a
value that is not a date is refused the same way, with the value in the reason.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from PIL import Image

from device.importer.makers import MakerFacts, read_maker_note

__all__ = ["PhotoFacts", "PhotoProblem", "ProblemKind", "read_photo"]

ProblemKind = Literal["not_image", "corrupt", "no_time"]

TAG_MAKE = 0x010F
TAG_MODEL = 0x0110
TAG_EXIF_IFD = 0x8769
TAG_DATETIME_ORIGINAL = 0x9003
TAG_DATETIME_DIGITIZED = 0x9004
TAG_OFFSET_TIME_ORIGINAL = 0x9011
TAG_OFFSET_TIME_DIGITIZED = 0x9012
TAG_SUBSEC_TIME_ORIGINAL = 0x9291
TAG_SUBSEC_TIME_DIGITIZED = 0x9292
TAG_MAKER_NOTE = 0x927C
TAG_BODY_SERIAL = 0xA431

# Each time tag with the sub-second and offset tags that belong to it, in order of preference.
TIME_TAGS = (
    ("DateTimeOriginal", TAG_DATETIME_ORIGINAL, TAG_SUBSEC_TIME_ORIGINAL, TAG_OFFSET_TIME_ORIGINAL),
    (
        "DateTimeDigitized",
        TAG_DATETIME_DIGITIZED,
        TAG_SUBSEC_TIME_DIGITIZED,
        TAG_OFFSET_TIME_DIGITIZED,
    ),
)

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
# Bytes after EOI that are padding, not data: NULs (a FAT cluster's unused tail copied along,
# cameras padding to a block) and 0xFF (erased flash, fill bytes allowed between markers).
PADDING = b"\x00\xff"

# What a file that is not a JPEG most likely is, by its first bytes: on a card, the camera's
# videos and index files sit beside the photos.
SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"GIF8", "a GIF image"),
    (0, b"II*\x00", "a TIFF or raw image"),
    (0, b"MM\x00*", "a TIFF or raw image"),
    (0, b"BM", "a BMP image"),
    (4, b"ftyp", "an MP4/MOV video"),
    (8, b"AVI ", "an AVI video"),
    (8, b"WAVE", "a WAV recording"),
)

EXIF_DATE = re.compile(r"(\d{4})[:/-](\d{2})[:/-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
UNSET_DATE = re.compile(r"[0: ]*")  # "0000:00:00 00:00:00": a clock never set
BLANK_DATE = re.compile(r"[: ]*")  # "    :  :     :  :  ": EXIF's "unknown"
EXIF_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")
# Scanned film can predate digital cameras, but a year before 1900 is a damaged field.
PLAUSIBLE_YEARS = range(1900, 2100)
MAX_OFFSET = timedelta(hours=14)  # the widest UTC offsets in use are -12:00 and +14:00
REASON_VALUE_CHARS = 40


class PhotoProblem(ValueError):
    """Why a file is not an importable photo: one line, e.g. 'truncated JPEG (no EOI marker)',
    'not a JPEG', 'no EXIF time (DateTimeOriginal missing)', 'EXIF time not a date: ...'."""

    kind: ProblemKind

    def __init__(self, kind: ProblemKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


# The time tag of a photo whose only recorded time is its maker note's own.
MAKER_NOTE_TIME = "MakerNoteDateTime"


@dataclass(frozen=True)
class PhotoFacts:
    taken_at: datetime  # naive: the camera's clock (+ sub-seconds as microseconds)
    time_tag: str  # "DateTimeOriginal" | "DateTimeDigitized" | "MakerNoteDateTime"
    offset: timedelta | None  # the time tag's Offset tag ("+02:00") when present and valid
    make: str | None  # stripped of NULs/spaces; None when blank
    model: str | None
    serial: str | None  # BodySerialNumber, else the maker note's serial
    width: int | None
    height: int | None
    maker: MakerFacts | None
    exif: dict[str, Any]  # JSON-safe: the tag strings read, and "MakerNotes": maker.fields


def read_photo(data: bytes) -> PhotoFacts:
    """The facts of one photo file's bytes; raises ``PhotoProblem`` (and nothing else)."""
    _check_structure(data)
    width, height, main, sub = _parse_header(data)

    make = _text(main.get(TAG_MAKE))
    model = _text(main.get(TAG_MODEL))
    exif: dict[str, Any] = {}
    note = _raw_bytes(sub.get(TAG_MAKER_NOTE))
    maker = read_maker_note(make, model, note) if note else None
    try:
        time_tag, taken_at, offset = _taken_at(sub, exif, has_exif=bool(main) or bool(sub))
    except PhotoProblem:
        # Some firmwares leave DateTimeOriginal out but write the time into their maker
        # note: a time the camera recorded, not a guess, so the photo is kept.
        if maker is None or maker.taken_at is None:
            raise
        time_tag, taken_at, offset = MAKER_NOTE_TIME, maker.taken_at, None
    _keep(exif, "Make", make)
    _keep(exif, "Model", model)
    body_serial = _text(sub.get(TAG_BODY_SERIAL))
    _keep(exif, "BodySerialNumber", body_serial)
    if maker is not None:
        exif["MakerNotes"] = dict(maker.fields)
    if time_tag == MAKER_NOTE_TIME:
        exif["camtrapTimeFrom"] = MAKER_NOTE_TIME
    return PhotoFacts(
        taken_at=taken_at,
        time_tag=time_tag,
        offset=offset,
        make=make,
        model=model,
        serial=body_serial or (maker.serial if maker is not None else None),
        width=width,
        height=height,
        maker=maker,
        exif=exif,
    )


# -- the file -------------------------------------------------------------------------------


def _check_structure(data: bytes) -> None:
    """The cheap checks, before any parsing: is it a JPEG, and is all of it there?"""
    if not data:
        raise PhotoProblem("corrupt", "empty file (0 bytes)")
    if not data.startswith(SOI):
        if not data.strip(b"\x00"):
            # A card pulled while the camera (or a copy) was writing leaves zero-filled files.
            raise PhotoProblem(
                "corrupt", f"only zero bytes ({len(data)} bytes): an unfinished write"
            )
        raise PhotoProblem("not_image", f"not a JPEG{_looks_like(data)}")
    if not (data.endswith(EOI) or data.rstrip(PADDING).endswith(EOI)):
        raise PhotoProblem("corrupt", "truncated JPEG (no EOI marker)")


def _looks_like(data: bytes) -> str:
    for at, signature, what in SIGNATURES:
        if data[at : at + len(signature)] == signature:
            return f" ({what})"
    return ""


def _parse_header(data: bytes) -> tuple[int, int, Mapping[int, Any], Mapping[int, Any]]:
    """Size, IFD0 and the Exif IFD from Pillow's header parse (the pixels stay undecoded)."""
    try:
        # Pillow warns (to stderr) of EXIF it could only partly read and of huge sizes; a
        # technician would see library paths. What matters is reported by what is returned.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return _pillow_header(data)
    except PhotoProblem:
        raise
    except Exception as exc:  # Pillow's JPEG header parser raises many kinds on bad bytes
        raise PhotoProblem("corrupt", f"JPEG header unreadable ({_one_line(exc)})") from exc


def _pillow_header(data: bytes) -> tuple[int, int, Mapping[int, Any], Mapping[int, Any]]:
    with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
        width, height = image.size
        try:
            exif = image.getexif()
            main: Mapping[int, Any] = dict(exif)
            sub: Mapping[int, Any] = dict(exif.get_ifd(TAG_EXIF_IFD))
        except Exception as exc:  # ditto for its EXIF parser
            raise PhotoProblem("no_time", f"EXIF unreadable ({_one_line(exc)})") from exc
    return width, height, main, sub


# -- the time -------------------------------------------------------------------------------


def _taken_at(
    sub: Mapping[int, Any], exif: dict[str, Any], *, has_exif: bool
) -> tuple[str, datetime, timedelta | None]:
    blank: list[str] = []
    for name, tag, subsec_tag, offset_tag in TIME_TAGS:
        value = _text(sub.get(tag))
        if value is None or BLANK_DATE.fullmatch(value):
            # EXIF's way of writing "unknown" is spaces and colons: the same as no tag.
            blank += [name] if value is not None else []
            continue
        exif[name] = value
        subsec = _text(sub.get(subsec_tag))
        offset_text = _text(sub.get(offset_tag))
        _keep(exif, name.replace("DateTime", "SubSecTime"), subsec)
        _keep(exif, name.replace("DateTime", "OffsetTime"), offset_text)
        when = _exif_time(name, value)
        if subsec is not None and subsec.isdigit():
            when = when.replace(microsecond=int(subsec[:6].ljust(6, "0")))
        return name, when, _offset(offset_text)
    if blank:
        raise PhotoProblem("no_time", f"EXIF time not set ({' and '.join(blank)} blank)")
    if not has_exif:
        raise PhotoProblem("no_time", "no EXIF time (the photo has no EXIF at all)")
    raise PhotoProblem("no_time", "no EXIF time (DateTimeOriginal missing)")


def _exif_time(name: str, value: str) -> datetime:
    if UNSET_DATE.fullmatch(value):
        raise PhotoProblem("no_time", f"EXIF time not set ({name} is {_quoted(value)})")
    match = EXIF_DATE.fullmatch(value)
    if match is not None and int(match.group(1)) in PLAUSIBLE_YEARS:
        try:
            year, month, day, hour, minute, second = (int(part) for part in match.groups())
            return datetime(year, month, day, hour, minute, second)
        except ValueError:
            pass
    raise PhotoProblem("no_time", f"EXIF time not a date: {name} {_quoted(value)}")


def _offset(text: str | None) -> timedelta | None:
    match = EXIF_OFFSET.fullmatch(text) if text is not None else None
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    if int(minutes) >= 60:
        return None
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    if offset > MAX_OFFSET:
        return None
    return -offset if sign == "-" else offset


# -- tag values -----------------------------------------------------------------------------


def _text(value: object) -> str | None:
    """An EXIF text as a clean string: NUL padding and surrounding spaces removed, unprintable
    characters dropped; None when nothing is left ("", all spaces, all NULs) or not text."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    text = value.strip("\x00").split("\x00", 1)[0]
    text = "".join(char for char in text if char.isprintable()).strip()
    return text or None


def _raw_bytes(value: object) -> bytes | None:
    if isinstance(value, bytes):
        return value
    # A note written with type BYTE comes back as a tuple of ints.
    if isinstance(value, tuple) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value)
    return None


def _keep(exif: dict[str, Any], name: str, value: str | None) -> None:
    if value is not None:
        exif[name] = value


def _quoted(value: str) -> str:
    shown = value if len(value) <= REASON_VALUE_CHARS else value[:REASON_VALUE_CHARS] + "..."
    return repr(shown)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
