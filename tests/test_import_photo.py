"""``read_photo``: what a trail-camera photo's bytes say about it (time, camera, size, maker
note), and the one-line reason when they do not make an importable photo.

Photos are written by tests/support/trailcam.py; the real camera-trap photos in
../shared/camtrap-dev are read where present (the tests that need them skip otherwise).
"""

from __future__ import annotations

import io
import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from device.contracts.photo_time import exif_taken_at
from device.importer.photo import MAKER_NOTE_TIME, PhotoFacts, PhotoProblem, read_photo
from tests.support.trailcam import exif_time, hyperfire_note, trailcam_jpeg

DEV_SET = Path("/work/shared/camtrap-dev")
SHOT = datetime(2025, 7, 14, 5, 42, 17)


def problem(data: bytes) -> PhotoProblem:
    with pytest.raises(PhotoProblem) as caught:
        read_photo(data)
    reason = str(caught.value)
    assert reason and "\n" not in reason  # one line, for a technician
    return caught.value


# -- time -----------------------------------------------------------------------------------


def test_a_photo_gives_its_original_time_with_subseconds_offset_camera_and_size():
    data = trailcam_jpeg(
        taken_at=SHOT,
        subsec="37",
        offset="+02:00",
        make="RECONYX",
        model="HC600 HYPERFIRE",
        serial="H600HH09876543",
        size=(80, 60),
    )
    facts = read_photo(data)
    assert facts.taken_at == SHOT.replace(microsecond=370_000)
    assert facts.taken_at.tzinfo is None  # the camera's wall clock, as it was set
    assert facts.time_tag == "DateTimeOriginal"
    assert facts.offset == timedelta(hours=2)
    assert (facts.make, facts.model, facts.serial) == (
        "RECONYX",
        "HC600 HYPERFIRE",
        "H600HH09876543",
    )
    assert (facts.width, facts.height) == (80, 60)
    assert facts.maker is None
    assert facts.exif == {
        "DateTimeOriginal": exif_time(SHOT),
        "SubSecTimeOriginal": "37",
        "OffsetTimeOriginal": "+02:00",
        "Make": "RECONYX",
        "Model": "HC600 HYPERFIRE",
        "BodySerialNumber": "H600HH09876543",
    }


@pytest.mark.parametrize(
    ("subsec", "microsecond"),
    [("5", 500_000), ("050", 50_000), ("123456789", 123_456), ("ab", 0), ("  ", 0)],
)
def test_subseconds_are_the_fraction_digits_and_anything_else_is_ignored(subsec, microsecond):
    assert read_photo(trailcam_jpeg(taken_at=SHOT, subsec=subsec)).taken_at == SHOT.replace(
        microsecond=microsecond
    )


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        ("-03:30", -timedelta(hours=3, minutes=30)),
        ("+14:00", timedelta(hours=14)),
        ("+00:00", timedelta(0)),
        ("+15:00", None),
        ("+02:75", None),
        ("02:00", None),
        ("+2:00", None),
        ("   :  ", None),
    ],
)
def test_an_offset_is_kept_only_when_it_is_a_real_utc_offset(offset, expected):
    facts = read_photo(trailcam_jpeg(taken_at=SHOT, offset=offset))
    assert facts.offset == expected
    assert facts.taken_at == SHOT  # a bad offset never costs the time itself


def test_digitized_time_is_used_only_when_the_original_is_absent():
    digitized = trailcam_jpeg(
        taken_at=SHOT, subsec="2", offset="-05:00", time_tag="DateTimeDigitized"
    )
    facts = read_photo(digitized)
    assert (facts.time_tag, facts.taken_at) == (
        "DateTimeDigitized",
        SHOT.replace(microsecond=200_000),
    )
    assert facts.offset == timedelta(hours=-5)
    assert facts.exif["DateTimeDigitized"] == exif_time(SHOT)
    assert "DateTimeOriginal" not in facts.exif
    # A blank original is as good as none: the digitized time is the camera's own.
    blank = _with_both_times(original="    :  :     :  :  ", digitized=exif_time(SHOT))
    assert read_photo(blank).time_tag == "DateTimeDigitized"
    # With both present the original wins, even when they differ.
    both = _with_both_times(original=exif_time(SHOT), digitized=exif_time(SHOT + timedelta(1)))
    assert (read_photo(both).time_tag, read_photo(both).taken_at) == ("DateTimeOriginal", SHOT)


def _with_both_times(*, original: str, digitized: str) -> bytes:
    exif = Image.Exif()
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = original
    sub[0x9004] = digitized
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 60)).save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def test_the_file_modification_time_tag_is_never_taken_for_the_shot():
    edited = trailcam_jpeg(taken_at=SHOT, modified_at=SHOT + timedelta(days=30))
    assert read_photo(edited).taken_at == SHOT
    only_modified = trailcam_jpeg(taken_at=None, modified_at=SHOT)
    failure = problem(only_modified)
    assert failure.kind == "no_time"
    assert str(failure) == "no EXIF time (DateTimeOriginal missing)"


@pytest.mark.parametrize(
    "written",
    [
        "2025:07:14 05:42:17\x00\x00\x00",  # NUL-padded to a fixed field
        "  2025:07:14 05:42:17 ",  # space-padded
        "2025-07-14 05:42:17",  # dashes, as some firmware writes
        "2025:07:14T05:42:17",
    ],
)
def test_padded_and_dashed_forms_of_the_same_time_are_read_alike(written):
    assert read_photo(trailcam_jpeg(taken_at=written)).taken_at == SHOT


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("0000:00:00 00:00:00", "EXIF time not set (DateTimeOriginal is '0000:00:00 00:00:00')"),
        ("    :  :     :  :  ", "EXIF time not set (DateTimeOriginal blank)"),
        ("2025:13:14 05:42:17", "EXIF time not a date: DateTimeOriginal '2025:13:14 05:42:17'"),
        ("2025:02:30 05:42:17", "EXIF time not a date: DateTimeOriginal '2025:02:30 05:42:17'"),
        ("14/07/2025 05:42", "EXIF time not a date: DateTimeOriginal '14/07/2025 05:42'"),
        ("yesterday", "EXIF time not a date: DateTimeOriginal 'yesterday'"),
    ],
)
def test_an_unset_or_garbled_time_is_refused_with_the_value_never_guessed(written, reason):
    failure = problem(trailcam_jpeg(taken_at=written))
    assert (failure.kind, str(failure)) == ("no_time", reason)


def test_a_photo_without_any_exif_says_so():
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(out, "JPEG")
    failure = problem(out.getvalue())
    assert (failure.kind, str(failure)) == (
        "no_time",
        "no EXIF time (the photo has no EXIF at all)",
    )


# -- camera ---------------------------------------------------------------------------------


@pytest.mark.parametrize("blank", ["", "      ", "\x00\x00\x00\x00\x00\x00\x00"])
def test_a_blank_make_or_model_is_none(blank):
    facts = read_photo(trailcam_jpeg(taken_at=SHOT, make=blank, model=blank))
    assert (facts.make, facts.model) == (None, None)
    assert "Make" not in facts.exif and "Model" not in facts.exif


def test_make_and_model_lose_their_nul_and_space_padding():
    facts = read_photo(
        trailcam_jpeg(taken_at=SHOT, make=" RECONYX ", model="HC550 HYPERFIRE\x00\x00\x00")
    )
    assert (facts.make, facts.model) == ("RECONYX", "HC550 HYPERFIRE")


def test_the_body_serial_number_wins_over_the_maker_notes_serial():
    note = hyperfire_note(taken_at=SHOT, serial="H600HH00000001")
    assert read_photo(trailcam_jpeg(taken_at=SHOT, maker_note=note)).serial == "H600HH00000001"
    both = trailcam_jpeg(taken_at=SHOT, maker_note=note, serial="BODY-42")
    assert read_photo(both).serial == "BODY-42"
    assert read_photo(trailcam_jpeg(taken_at=SHOT)).serial is None


def test_the_maker_note_is_read_and_its_fields_land_in_exif_as_json():
    note = hyperfire_note(taken_at=SHOT, sequence=(2, 3), trigger="timelapse")
    facts = read_photo(trailcam_jpeg(taken_at=SHOT, maker_note=note))
    assert facts.maker is not None and facts.maker.sequence == (2, 3)
    assert facts.maker.capture_method == "timeLapse"
    assert facts.exif["MakerNotes"] == facts.maker.fields
    assert json.loads(json.dumps(facts.exif)) == facts.exif


def test_another_brands_maker_note_is_ignored_not_an_error():
    facts = read_photo(
        trailcam_jpeg(taken_at=SHOT, make="Bushnell", model="Core DS", maker_note=b"\x07" * 300)
    )
    assert facts.maker is None and "MakerNotes" not in facts.exif
    assert facts.taken_at == SHOT


def test_photos_with_different_seeds_have_different_bytes():
    assert trailcam_jpeg(taken_at=SHOT, seed=1) != trailcam_jpeg(taken_at=SHOT, seed=2)
    assert trailcam_jpeg(taken_at=SHOT, seed=1) == trailcam_jpeg(taken_at=SHOT, seed=1)


# -- files that are not photos --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a JPEG (a PNG image)"),
        (
            b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x01" * 64,
            "not a JPEG (an MP4/MOV video)",
        ),
        (b"RIFF\x10\x00\x00\x00AVI LIST" + b"\x02" * 64, "not a JPEG (an AVI video)"),
        (b"DCIM index\nIMG_0001.JPG\n", "not a JPEG"),
    ],
)
def test_a_video_or_any_other_file_is_not_an_image(data, reason):
    failure = problem(data)
    assert (failure.kind, str(failure)) == ("not_image", reason)


def test_an_empty_or_zero_filled_file_is_a_corrupt_write():
    assert (problem(b"").kind, str(problem(b""))) == ("corrupt", "empty file (0 bytes)")
    zeros = problem(b"\x00" * 32768)
    assert zeros.kind == "corrupt" and "zero bytes" in str(zeros)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_a_truncated_photo_is_corrupt_even_when_zero_padded(keep):
    whole = trailcam_jpeg(taken_at=SHOT, size=(160, 120), seed=3)
    cut = whole[: int(len(whole) * keep)]
    for data in (cut, cut + b"\x00" * 4096):  # a card copy can leave the cluster's zeros
        failure = problem(data)
        assert (failure.kind, str(failure)) == ("corrupt", "truncated JPEG (no EOI marker)")


def test_padding_after_the_end_of_the_image_is_allowed():
    whole = trailcam_jpeg(taken_at=SHOT, seed=4)
    expected = read_photo(whole)
    for pad in (b"\x00" * 3000, b"\xff" * 7, b"\x00\xff\x00"):
        assert read_photo(whole + pad) == expected


def test_a_damaged_header_between_intact_start_and_end_markers_is_corrupt():
    failure = problem(b"\xff\xd8" + b"\x5a" * 500 + b"\xff\xd9")
    assert failure.kind == "corrupt" and str(failure).startswith("JPEG header unreadable")


def test_no_byte_string_raises_anything_but_a_photo_problem():
    """Seeded truncations and bit flips of a real-looking photo, and random bytes: each gives
    facts or a PhotoProblem with a known kind and a one-line reason."""
    rng = random.Random(16)
    note = hyperfire_note(taken_at=SHOT, sequence=(1, 3))
    whole = trailcam_jpeg(taken_at=SHOT, subsec="12", offset="+01:00", maker_note=note, seed=5)
    header_end = whole.index(b"\xff\xda")  # flips in the header and EXIF are the interesting ones
    cases: list[bytes] = []
    for _ in range(400):
        flipped = bytearray(whole)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(2, header_end) if rng.random() < 0.8 else rng.randrange(len(whole))
            flipped[at] ^= 1 << rng.randrange(8)
        cases.append(bytes(flipped))
    cases += [whole[: rng.randrange(len(whole))] for _ in range(100)]
    cases += [whole[: rng.randrange(header_end)] + b"\xff\xd9" for _ in range(100)]
    cases += [rng.randbytes(rng.randrange(1, 600)) for _ in range(100)]
    cases += [b"\xff\xd8" + rng.randbytes(rng.randrange(600)) + b"\xff\xd9" for _ in range(100)]
    read = 0
    for data in cases:
        try:
            facts = read_photo(data)
        except PhotoProblem as failure:
            assert failure.kind in ("not_image", "corrupt", "no_time")
            assert str(failure) and "\n" not in str(failure)
        else:
            assert isinstance(facts, PhotoFacts)
            json.dumps(facts.exif)
            read += 1
    assert read > 0  # some flips land where they do no harm: the test reads, not only refuses


# -- real camera-trap photos ----------------------------------------------------------------


needs_dev_set = pytest.mark.skipif(
    not DEV_SET.is_dir(), reason="../shared/camtrap-dev (real camera-trap photos) is absent"
)


@needs_dev_set
def test_real_photos_give_the_same_time_as_the_projects_other_exif_reader():
    photos = sorted(DEV_SET.glob("*.jpg"))
    assert photos
    for path in photos:
        other = exif_taken_at(path)
        try:
            facts = read_photo(path.read_bytes())
        except PhotoProblem as failure:
            assert other is None and failure.kind == "no_time", path.name
        else:
            if facts.time_tag == MAKER_NOTE_TIME:
                # No EXIF date at all (the PC800 bear): the maker note's own time is kept.
                assert other is None and facts.maker is not None, path.name
                assert facts.taken_at == facts.maker.taken_at, path.name
            else:
                assert facts.taken_at == other, path.name


def test_a_photo_whose_only_time_is_its_maker_notes_keeps_that_time():
    moment = datetime(2010, 11, 6, 4, 4)
    data = trailcam_jpeg(taken_at=None, maker_note=hyperfire_note(taken_at=moment))
    facts = read_photo(data)
    assert facts.time_tag == MAKER_NOTE_TIME
    assert facts.taken_at == moment
    assert facts.exif["camtrapTimeFrom"] == MAKER_NOTE_TIME


@needs_dev_set
def test_serengeti_frames_have_a_blank_make_and_an_all_zero_note_so_neither_is_read():
    frames = sorted(DEV_SET.glob("serengeti_*.jpg"))
    assert frames
    for path in frames:
        facts = read_photo(path.read_bytes())
        assert (facts.make, facts.model, facts.maker) == (None, None, None), path.name


@needs_dev_set
@pytest.mark.parametrize(
    "name", ["ctai_blank", "ctai_vehicle", "ctai_domestic_cattle", "ctai_domestic_dog"]
)
def test_real_reconyx_photos_are_read_with_their_maker_note(name):
    facts = read_photo((DEV_SET / f"{name}.jpg").read_bytes())
    assert facts.make == "RECONYX"
    assert facts.maker is not None and facts.maker.layout == "reconyx-hyperfire"
    # These cameras write no BodySerialNumber: the serial comes from the note.
    assert "BodySerialNumber" not in facts.exif and facts.serial == facts.maker.serial
    assert facts.maker.taken_at == facts.taken_at
