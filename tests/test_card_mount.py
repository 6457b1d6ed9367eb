"""``camtrap card mount|unmount`` on real FAT and exFAT card images: the card is mounted
read-only (the kernels here have no vfat, so through the FUSE fallback), anything that is not
a card is refused in one line, and the debian rule and unit mount where the agent watches."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.config import Settings
from device.errors import UserError, guarded
from device.exitcodes import Exit
from device.importer import card_commands
from device.importer.card_mount import (
    DEFAULT_CARDS_DIR,
    CardFilesystem,
    mount_card,
    sniff_filesystem,
    unmount_card,
)
from device.importer.mounts import mount_at
from device.plugins import OneLineParser
from tests.support.fatcard import build_card, fuse_available, mounted_card

ROOT = Path(__file__).resolve().parent.parent
DEBIAN = ROOT / "debian"
UDEV_RULE = DEBIAN / "camtrap-agent.camtrap-card.udev"
CARD_UNIT = DEBIAN / "camtrap-agent.camtrap-card@.service"

PHOTOS = {
    "DCIM/100RECNX/IMG_0001.JPG": b"\xff\xd8 photo one" * 100,
    "DCIM/100RECNX/IMG_0002.JPG": b"\xff\xd8 photo two" * 3000,
}


def skip_without_fuse(fs: str = "fat32") -> None:
    reason = fuse_available(fs)
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def fat_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_card(tmp_path_factory.mktemp("fat") / "card.img", PHOTOS)


@pytest.fixture
def unmounts() -> Iterator[list[Path]]:
    """Mount points a test mounted on; unmounted afterwards whatever the test did."""
    points: list[Path] = []
    yield points
    for point in points:
        if mount_at(point) is not None:
            unmount_card(point)


def kernel_has(fstype: str) -> bool:
    return any(line.split()[-1:] == [fstype] for line in open("/proc/filesystems"))


def test_a_fat_card_is_mounted_read_only_with_every_photo_byte_for_byte(
    tmp_path, fat_card, unmounts
):
    skip_without_fuse()
    at = tmp_path / "cards" / "sdb1"
    unmounts.append(at)
    card = mount_card(fat_card, at)
    assert card.filesystem is CardFilesystem.FAT32
    # This kernel has no vfat: the FUSE fallback is what ran.
    assert card.driver == ("kernel" if kernel_has("vfat") else "fusefat")
    assert card.mount.read_only
    assert card.mount.mount_point == Path(os.path.realpath(at))
    for name, data in PHOTOS.items():
        assert (at / name).read_bytes() == data
    with pytest.raises(OSError) as written:
        (at / "DCIM/100RECNX/IMG_0001.JPG").write_bytes(b"changed")
    assert written.value.errno == errno.EROFS
    assert unmount_card(at) is True
    assert mount_at(at) is None
    assert unmount_card(at) is False


def test_an_exfat_card_is_mounted_read_only_with_every_photo_byte_for_byte(tmp_path, unmounts):
    skip_without_fuse("exfat")
    image = build_card(tmp_path / "card.img", PHOTOS, fs="exfat")
    at = tmp_path / "cards" / "sdc1"
    unmounts.append(at)
    card = mount_card(image, at)
    assert card.filesystem is CardFilesystem.EXFAT
    assert card.driver == ("kernel" if kernel_has("exfat") else "mount.exfat-fuse")
    assert card.mount.read_only
    assert {name: (at / name).read_bytes() for name in PHOTOS} == PHOTOS
    assert unmount_card(at) is True


@pytest.mark.parametrize(
    "fs, expected",
    [("fat16", CardFilesystem.FAT16), ("fat32", CardFilesystem.FAT32)],
)
def test_the_boot_sector_tells_the_fat_type(tmp_path, fs, expected):
    image = build_card(tmp_path / "card.img", PHOTOS, fs=fs)
    assert sniff_filesystem(image.read_bytes()[:512]) is expected


def test_an_exfat_boot_sector_is_told_from_fat():
    boot = bytearray(512)
    boot[3:11] = b"EXFAT   "
    boot[510:512] = b"\x55\xaa"
    assert sniff_filesystem(bytes(boot)) is CardFilesystem.EXFAT
    boot[510:512] = b"\x00\x00"  # no boot signature: not a filesystem at all
    assert sniff_filesystem(bytes(boot)) is None


def refused(device: Path, at: Path) -> UserError:
    with pytest.raises(UserError) as caught:
        mount_card(device, at)
    assert "\n" not in caught.value.message
    return caught.value


def test_a_device_that_is_not_a_card_is_refused_in_one_line(tmp_path):
    disk = tmp_path / "ext4.img"
    disk.write_bytes(b"\x00" * 1024 + b"\x53\xef" + b"\x00" * 4096)  # not FAT, not exFAT
    error = refused(disk, tmp_path / "at")
    assert error.code == Exit.DATA_ERROR
    assert str(disk) in error.message and "not a FAT or exFAT card" in error.message
    assert not (tmp_path / "at").exists()


def test_a_whole_disk_with_a_partition_table_is_sent_to_its_partition(tmp_path):
    boot = bytearray(4096)
    boot[446 + 4] = 0x0C  # partition 1: FAT32 (LBA)
    boot[510:512] = b"\x55\xaa"
    disk = tmp_path / "sdb"
    disk.write_bytes(bytes(boot))
    error = refused(disk, tmp_path / "at")
    assert error.code == Exit.DATA_ERROR
    assert "partition" in error.message and f"{disk}1" in error.message


def test_a_missing_device_says_to_insert_the_card(tmp_path):
    error = refused(tmp_path / "sdq1", tmp_path / "at")
    assert error.code == Exit.NO_INPUT
    assert f"{tmp_path / 'sdq1'}: no such device" in error.message


def test_a_mount_point_in_use_or_not_empty_is_refused(tmp_path, fat_card, unmounts):
    skip_without_fuse()
    full = tmp_path / "full"
    full.mkdir()
    (full / "note.txt").write_text("mine")
    assert refused(fat_card, full).code == Exit.CANT_CREATE
    at = tmp_path / "busy"
    with mounted_card(fat_card, at):
        error = refused(build_card(tmp_path / "other.img", PHOTOS), at)
    assert error.code == Exit.CANT_CREATE and "already has a filesystem mounted" in error.message
    assert (full / "note.txt").read_text() == "mine"


def test_a_card_already_mounted_is_not_mounted_twice(tmp_path, fat_card, unmounts):
    skip_without_fuse()
    first = tmp_path / "first"
    unmounts.append(first)
    mount_card(fat_card, first)
    error = refused(fat_card, tmp_path / "second")
    assert error.code == Exit.USAGE
    assert f"already mounted at {os.path.realpath(first)}" in error.message
    assert not (tmp_path / "second").exists()


def test_unmount_refuses_a_filesystem_that_is_no_card():
    with pytest.raises(UserError) as caught:
        unmount_card(Path("/proc"))
    assert caught.value.code == Exit.USAGE
    assert "not a card" in caught.value.message
    assert mount_at(Path("/proc")) is not None


# --------------------------------------------------------------------------- the commands


def camtrap(*argv: str) -> int:
    """``camtrap card ...`` as the console script runs it: one line per error, an exit code."""

    def main(args: list[str] | None) -> int:
        parser = OneLineParser(prog="camtrap")
        card_commands.register(parser.add_subparsers(metavar="COMMAND"))
        parsed = parser.parse_args(args)

        def settings() -> Settings:
            raise AssertionError("the card commands never load the configuration")

        return int(parsed.func(parsed, settings))

    return guarded("camtrap", main, list(argv))


def test_card_mount_and_unmount_say_what_they_did(tmp_path, fat_card, unmounts, capsys):
    skip_without_fuse()
    at = tmp_path / "cards" / "sdb1"
    unmounts.append(at)
    assert camtrap("card", "mount", str(fat_card), "--at", str(at)) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(
        rf"mounted {re.escape(str(fat_card))} \(FAT32\) read-only at"
        rf" {re.escape(os.path.realpath(at))}( through fusefat)?\n",
        out,
    )
    assert (at / "DCIM/100RECNX/IMG_0001.JPG").read_bytes() == PHOTOS["DCIM/100RECNX/IMG_0001.JPG"]
    assert camtrap("card", "unmount", str(at)) == 0
    assert capsys.readouterr().out == f"unmounted {at}\n"
    assert mount_at(at) is None
    # Stopping the unit again (or after the card was yanked) is no error.
    assert camtrap("card", "unmount", str(at)) == 0
    assert capsys.readouterr().out == f"no card mounted at {at}; nothing to do\n"


@pytest.mark.parametrize(
    "make, code, says",
    [
        (lambda d: d / "sdq1", Exit.NO_INPUT, "no such device; is the card inserted?"),
        (lambda d: _write(d / "disk.img", b"\x00" * 4096), Exit.DATA_ERROR, "not a FAT or exFAT"),
        (lambda d: d, Exit.USAGE, "is a directory, not a card"),
    ],
    ids=["missing", "not-fat", "directory"],
)
def test_card_mount_errors_are_one_line_and_an_exit_code(tmp_path, capsys, make, code, says):
    device = make(tmp_path)
    assert camtrap("card", "mount", str(device), "--at", str(tmp_path / "at")) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"camtrap: {device}") and says in line


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_card_without_an_action_is_a_one_line_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        camtrap("card")
    assert caught.value.code == Exit.USAGE
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("camtrap card: error:")


def test_a_card_is_mounted_by_default_under_its_device_name_where_the_agent_watches():
    assert card_commands.default_mount_point(Path("/dev/sdb1")) == DEFAULT_CARDS_DIR / "sdb1"


# --------------------------------------------------------------------------- debian


def unit_values(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_the_udev_rule_starts_the_card_unit_for_usb_fat_and_exfat_filesystems_only():
    rules = [
        line for line in UDEV_RULE.read_text().splitlines() if line and not line.startswith("#")
    ]
    starting = [line for line in rules if "SYSTEMD_WANTS" in line]
    assert len(starting) == 1
    assert 'ENV{ID_FS_TYPE}=="vfat|exfat"' in starting[0]
    assert 'TAG+="systemd"' in starting[0]
    assert 'ENV{SYSTEMD_WANTS}+="camtrap-card@%k.service"' in starting[0]
    # Only USB: the Pi's own boot card (mmcblk0, FAT boot partition) is never mounted.
    assert 'ENV{ID_BUS}!="usb", GOTO="camtrap_card_end"' in rules
    # A Pi booting from USB: its boot partition, by the labels the Pi images give it.
    assert 'ENV{ID_FS_LABEL}=="bootfs|boot|system-boot", GOTO="camtrap_card_end"' in rules
    assert rules[-1] == 'LABEL="camtrap_card_end"'


def test_the_card_unit_mounts_where_the_agent_watches_and_unmounts_when_the_card_goes():
    unit = unit_values(CARD_UNIT.read_text())
    assert unit["BindsTo"] == ["dev-%i.device"]
    assert "local-fs.target" in unit["After"][0].split()
    assert unit["Type"] == ["oneshot"] and unit["RemainAfterExit"] == ["yes"]
    assert unit["ExecStart"] == [f"/usr/bin/camtrap card mount /dev/%I --at {DEFAULT_CARDS_DIR}/%I"]
    assert unit["ExecStop"] == [f"/usr/bin/camtrap card unmount {DEFAULT_CARDS_DIR}/%I"]
    # The agent's unit lets the agent read /run/camtrap, its runtime directory.
    agent = unit_values((DEBIAN / "camtrap-agent.service").read_text())
    assert DEFAULT_CARDS_DIR.is_relative_to(f"/run/{agent['RuntimeDirectory'][0]}")


def test_debian_rules_install_the_rule_after_persistent_storage_and_the_template_unit():
    # 60-persistent-storage.rules sets the ID_FS_TYPE and ID_BUS the rule matches on: the
    # rule is installed as 85-camtrap-card.rules to run after it.
    rules = (DEBIAN / "rules").read_text()
    assert "dh_installudev --name=camtrap-card --priority=85" in rules
    assert "dh_installsystemd --name=camtrap-card@" in rules


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_accepts_the_card_unit(tmp_path):
    # verify wants ExecStart's program to exist; /usr/bin/camtrap is installed by the package.
    stand_in = shutil.which("true") or "/bin/true"
    text = CARD_UNIT.read_text().replace("/usr/bin/camtrap", stand_in)
    (tmp_path / "camtrap-card@.service").write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "camtrap-card@sdb1.service"],
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
