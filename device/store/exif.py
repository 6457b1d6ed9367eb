"""EXIF for stored captures, spliced into the JPEG without re-encoding it.

Besides the usual tags, UserComment holds a small JSON record (event id, frame number, capture
method, trigger, clock state). That record is what lets the store re-register a file whose
database row was lost: the file describes itself.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PIL import Image

TAG_MAKE = 0x010F
TAG_MODEL = 0x0110
TAG_SOFTWARE = 0x0131
TAG_EXIF_IFD = 0x8769
TAG_GPS_IFD = 0x8825
TAG_DATETIME_ORIGINAL = 0x9003
TAG_OFFSET_TIME_ORIGINAL = 0x9011
TAG_SUBSEC_TIME_ORIGINAL = 0x9291
TAG_USER_COMMENT = 0x9286
TAG_IMAGE_UNIQUE_ID = 0xA420
TAG_BODY_SERIAL = 0xA431
ASCII_PREFIX = b"ASCII\x00\x00\x00"
EXIF_HEADER = b"Exif\x00\x00"


@dataclass(frozen=True)
class CaptureTags:
    captured_at: datetime  # aware
    media_id: str
    device_id: str
    make: str
    model: str
    software: str
    record: dict[str, Any]  # self-description, see module docstring
    latitude: float | None = None
    longitude: float | None = None


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    degrees = int(value)
    minutes_full = (value - degrees) * 60
    minutes = int(minutes_full)
    seconds = round((minutes_full - minutes) * 60, 4)
    return (float(degrees), float(minutes), seconds)


def _offset(moment: datetime) -> str:
    delta = moment.utcoffset()
    if delta is None:
        raise ValueError("capture timestamps must carry a UTC offset")
    minutes = int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def build_exif(tags: CaptureTags) -> bytes:
    """The APP1 payload (``Exif\\0\\0`` + TIFF) for ``tags``."""
    exif = Image.Exif()
    exif[TAG_MAKE] = tags.make
    exif[TAG_MODEL] = tags.model
    exif[TAG_SOFTWARE] = tags.software
    sub = exif.get_ifd(TAG_EXIF_IFD)
    sub[TAG_DATETIME_ORIGINAL] = tags.captured_at.strftime("%Y:%m:%d %H:%M:%S")
    sub[TAG_OFFSET_TIME_ORIGINAL] = _offset(tags.captured_at)
    sub[TAG_SUBSEC_TIME_ORIGINAL] = f"{tags.captured_at.microsecond // 1000:03d}"
    sub[TAG_IMAGE_UNIQUE_ID] = tags.media_id.replace("-", "")
    sub[TAG_BODY_SERIAL] = tags.device_id
    sub[TAG_USER_COMMENT] = ASCII_PREFIX + json.dumps(tags.record, sort_keys=True).encode()
    if tags.latitude is not None and tags.longitude is not None:
        gps = exif.get_ifd(TAG_GPS_IFD)
        gps[0] = b"\x02\x03\x00\x00"
        gps[1] = "N" if tags.latitude >= 0 else "S"
        gps[2] = _dms(tags.latitude)
        gps[3] = "E" if tags.longitude >= 0 else "W"
        gps[4] = _dms(tags.longitude)
    payload = exif.tobytes()
    if not payload.startswith(EXIF_HEADER):
        payload = EXIF_HEADER + payload
    return payload


def _segments(jpeg: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each marker segment before the scan data."""
    segments = []
    pos = 2
    while pos + 4 <= len(jpeg) and jpeg[pos] == 0xFF:
        marker = jpeg[pos + 1]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data
            break
        (length,) = struct.unpack(">H", jpeg[pos + 2 : pos + 4])
        segments.append((marker, pos, pos + 2 + length))
        pos += 2 + length
    return segments


def with_exif(jpeg: bytes, payload: bytes) -> bytes:
    """Replace any EXIF APP1 in ``jpeg`` with ``payload``; the image data is untouched."""
    if len(payload) + 2 > 0xFFFF:
        raise ValueError("EXIF payload too large for one APP1 segment")
    segments = _segments(jpeg)
    keep = bytearray(jpeg[:2])
    insert_at_app0 = segments and segments[0][0] == 0xE0
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    if not insert_at_app0:
        keep += app1
    consumed = 2
    for marker, start, end in segments:
        is_exif = marker == 0xE1 and jpeg[start + 4 : start + 10] == EXIF_HEADER
        if not is_exif:
            keep += jpeg[start:end]
        if insert_at_app0 and marker == 0xE0 and start == segments[0][1]:
            keep += app1
        consumed = end
    keep += jpeg[consumed:]
    return bytes(keep)


def read_record(path_or_bytes: Any) -> dict[str, Any] | None:
    """The self-description written by ``build_exif``, or None if absent/unreadable."""
    try:
        with Image.open(path_or_bytes) as image:
            sub = image.getexif().get_ifd(TAG_EXIF_IFD)
            raw = sub.get(TAG_USER_COMMENT)
            unique = sub.get(TAG_IMAGE_UNIQUE_ID)
            original = sub.get(TAG_DATETIME_ORIGINAL)
            offset = sub.get(TAG_OFFSET_TIME_ORIGINAL)
    except Exception:
        return None
    if isinstance(raw, str):
        raw = raw.encode()
    if not raw or not raw.startswith(ASCII_PREFIX):
        return None
    try:
        record = json.loads(raw[len(ASCII_PREFIX) :].rstrip(b"\x00"))
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    record["image_unique_id"] = unique
    if original and offset:
        record.setdefault(
            "captured_at",
            datetime.strptime(f"{original}{offset}", "%Y:%m:%d %H:%M:%S%z").isoformat(),
        )
    return record
