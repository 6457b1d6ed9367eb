"""The trail-camera card images the import tests use: what goes on the card comes back off it
through a real FUSE mount, the mount cannot write, and pulling the card fails its reads."""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import subprocess
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from device.importer.mounts import mount_at
from tests.support.fatcard import DEFAULT_MTIME, build_card, fuse_available, mounted_card

FAT_QUIRKS: dict[str, bytes] = {
    "DCIM/100RECNX/IMG_0001.JPG": b"\xff\xd8 first photo",
    "DCIM/100RECNX/IMG_0002.JPG": b"\xff\xd8 second photo" * 500,
    "DCIM/100RECNX/A long name, with spaces.jpeg": b"long name",
    "DCIM/101RECNX/Élan ñ 日本.JPG": b"non-ascii long name",
    "._IMG_0001.JPG": b"\x00\x05\x16\x07 AppleDouble",
    ".Trashes/": b"",
    "System Volume Information/IndexerVolumeGuid": b"{guid}",
    "EMPTY.JPG": b"",
}


def skip_without_fuse(fs: str = "fat32") -> None:
    reason = fuse_available(fs)
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def quirky_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_card(
        tmp_path_factory.mktemp("card") / "card.img",
        FAT_QUIRKS,
        hidden=["System Volume Information"],
    )


def sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def files_under(root: Path) -> dict[str, bytes]:
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            found[path.relative_to(root).as_posix()] = path.read_bytes()
    return found


@pytest.mark.parametrize("fs", ["fat16", "fat32", "exfat"])
def test_every_file_reads_back_byte_for_byte_through_a_read_only_mount(tmp_path, fs):
    skip_without_fuse(fs)
    files = {**FAT_QUIRKS, "DCIM/100RECNX/IMG_0003.JPG": os.urandom(70_000)}
    image = build_card(tmp_path / f"{fs}.img", files, fs=fs, label=None)
    with mounted_card(image, tmp_path / "card") as card:
        mount = mount_at(card.path)
        assert mount is not None and mount.read_only
        assert files_under(card.path) == {k: v for k, v in files.items() if not k.endswith("/")}
        assert (card.path / ".Trashes").is_dir()


def test_a_read_only_mount_refuses_writes_and_leaves_the_image_as_it_was(tmp_path, quirky_card):
    skip_without_fuse()
    before = sha256(quirky_card)
    with mounted_card(quirky_card, tmp_path / "card") as card:
        photo = card.path / "DCIM/100RECNX/IMG_0001.JPG"
        with pytest.raises(OSError) as written, open(photo, "r+b") as handle:
            handle.write(b"changed")
        assert written.value.errno == errno.EROFS
        with pytest.raises(OSError):
            (card.path / "DCIM/new.txt").write_bytes(b"x")
        with pytest.raises(OSError):
            photo.unlink()
        assert photo.read_bytes() == FAT_QUIRKS["DCIM/100RECNX/IMG_0001.JPG"]
    assert sha256(quirky_card) == before


def test_fusefat_shows_the_volume_label_as_an_empty_file_at_the_root(tmp_path, quirky_card):
    # A quirk the import's scan meets on every labelled card read through fusefat.
    skip_without_fuse()
    with mounted_card(quirky_card, tmp_path / "card") as card:
        assert (card.path / "RECONYX").read_bytes() == b""


@pytest.mark.parametrize("fs", ["fat32", "exfat"])
def test_pulling_the_card_fails_every_read_and_leaves_no_mount_behind(tmp_path, fs):
    skip_without_fuse(fs)
    image = build_card(tmp_path / "card.img", FAT_QUIRKS, fs=fs)
    at = tmp_path / "card"
    with mounted_card(image, at) as card:
        opened = open(card.path / "DCIM/100RECNX/IMG_0002.JPG", "rb")  # noqa: SIM115
        card.pull()
        with pytest.raises(OSError) as listing:
            os.listdir(card.path / "DCIM/100RECNX")
        assert listing.value.errno == errno.ENOTCONN
        with pytest.raises(OSError):
            (card.path / "DCIM/100RECNX/IMG_0001.JPG").read_bytes()
        with pytest.raises(OSError):
            opened.read()
        with suppress(OSError):  # closing a file of a dead mount fails too
            opened.close()
        assert mount_at(at) is not None  # the dead mount stays until it is unmounted
    assert mount_at(at) is None
    assert os.listdir(at) == []


def test_fusefat_reads_a_lower_case_short_name_back_upper_case(tmp_path):
    # FAT keeps "img_0001.jpg" as the 8.3 name IMG_0001.JPG plus a lower-case flag, which
    # fusefat ignores; the import must not rely on the case of a name it wrote down before.
    skip_without_fuse()
    image = build_card(tmp_path / "card.img", {"DCIM/img_0001.jpg": b"a", "DCIM/Mixed.Jpg": b"b"})
    with mounted_card(image, tmp_path / "card") as card:
        assert sorted(os.listdir(card.path / "DCIM")) == ["IMG_0001.JPG", "Mixed.Jpg"]


def test_a_pulled_card_put_back_reads_as_before(tmp_path, quirky_card):
    skip_without_fuse()
    at = tmp_path / "card"
    with mounted_card(quirky_card, at) as card:
        card.pull()
    with mounted_card(quirky_card, at) as card:
        assert (card.path / "DCIM/100RECNX/IMG_0002.JPG").read_bytes() == FAT_QUIRKS[
            "DCIM/100RECNX/IMG_0002.JPG"
        ]


def test_leaving_the_block_unmounts_even_with_a_file_still_open(tmp_path, quirky_card):
    skip_without_fuse()
    at = tmp_path / "card"
    with mounted_card(quirky_card, at) as card:
        opened = open(card.path / "DCIM/100RECNX/IMG_0001.JPG", "rb")  # noqa: SIM115
    assert mount_at(at) is None
    with suppress(OSError):
        opened.close()


def fat_stamp(image: Path, short_name: bytes) -> datetime:
    """The modification time in the FAT directory entry with this 11-byte 8.3 name."""
    with open(image, "rb") as handle:
        data = handle.read(16 * 1024 * 1024)  # the directories are written first
    entry = data[data.index(short_name) :][:32]
    clock, date = struct.unpack("<HH", entry[22:26])
    return datetime(
        1980 + (date >> 9),
        (date >> 5) & 0x0F,
        date & 0x1F,
        clock >> 11,
        (clock >> 5) & 0x3F,
        (clock & 0x1F) * 2,
    )


def test_fat_stores_each_stamp_as_wall_clock_time_to_two_seconds(tmp_path):
    # A camera writes its own local time, with no zone; FAT keeps even seconds only.
    files = {"DCIM/A.JPG": b"a", "DCIM/B.JPG": b"b", "DCIM/C.JPG": b"c"}
    plus_two = timezone(timedelta(hours=2))
    image = build_card(
        tmp_path / "card.img",
        files,
        mtimes={
            "DCIM/A.JPG": datetime(2024, 3, 5, 10, 11, 13),
            "DCIM/B.JPG": datetime(2023, 12, 31, 23, 59, 58, tzinfo=plus_two),
        },
    )
    assert fat_stamp(image, b"A       JPG") == datetime(2024, 3, 5, 10, 11, 12)
    assert fat_stamp(image, b"B       JPG") == datetime(2023, 12, 31, 23, 59, 58)
    assert fat_stamp(image, b"C       JPG") == DEFAULT_MTIME


def test_the_same_content_makes_the_same_image(tmp_path):
    one = build_card(tmp_path / "one.img", FAT_QUIRKS)
    two = build_card(tmp_path / "two.img", FAT_QUIRKS)
    assert sha256(one) == sha256(two)


def mtools(*args: str) -> str:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": "/dev/null", "LC_ALL": "C.UTF-8"}
    result = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    return result.stdout


def test_hidden_paths_carry_fats_hidden_attribute(tmp_path, quirky_card):
    listing = mtools("mattrib", "-i", str(quirky_card), "::/*")
    attributes = {line[12:].strip(): line[:12] for line in listing.splitlines()}
    assert "H" in attributes["::/System Volume Information"]
    assert "H" not in attributes["::/DCIM"]


def test_a_card_with_thousands_of_files_holds_them_all(tmp_path):
    files = {f"DCIM/{100 + i // 500}RECNX/IMG_{i:04d}.JPG": b"%d" % i for i in range(2_000)}
    image = build_card(tmp_path / "card.img", files, fs="fat16")
    listing = mtools("mdir", "-/", "-b", "-i", str(image), "::/DCIM")
    assert sum(1 for line in listing.splitlines() if line.endswith(".JPG")) == 2_000


def test_a_given_size_is_the_images_size(tmp_path):
    image = build_card(tmp_path / "card.img", {"DCIM/A.JPG": b"a"}, size_mb=48)
    assert image.stat().st_size == 48 * 1024 * 1024


@pytest.mark.parametrize(
    "files",
    [
        {"DCIM/IMG_0001.JPG": b"a", "DCIM/img_0001.jpg": b"b"},
        {"../outside.jpg": b"a"},
        {"/DCIM/abs.jpg": b"a"},
        {"DCIM": b"a file", "DCIM/IMG_0001.JPG": b"under it"},
    ],
    ids=["case-only-difference", "dot-dot", "absolute", "file-and-directory"],
)
def test_a_card_no_camera_could_write_is_refused(tmp_path, files):
    with pytest.raises(ValueError):
        build_card(tmp_path / "card.img", files)
