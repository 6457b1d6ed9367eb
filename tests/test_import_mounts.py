"""Noticing cards: the mount table parsed, and each new mount under the card directories
reported once, from a mount table the test writes and from a real FUSE mount."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from device.importer.mounts import CardWatcher, Mount, card_root, parse_mountinfo, read_mounts
from tests.support.fatcard import build_card, fuse_available, mounted_card

ROOT_LINE = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"


def card_line(mount_id: int, point: str, source: str = "/dev/sdb1", dev: str = "8:17") -> str:
    return (
        f"{mount_id} 22 {dev} / {point} ro,nosuid,nodev,noexec,relatime shared:{mount_id} - vfat"
        f" {source} ro,fmask=0333,dmask=0222\n"
    )


class Table:
    """A mountinfo file the test rewrites as cards come and go."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: dict[int, str] = {22: ROOT_LINE}
        self.write()

    def mount(self, mount_id: int, point: Path, **kwargs: str) -> None:
        self.lines[mount_id] = card_line(mount_id, str(point), **kwargs)
        self.write()

    def unmount(self, mount_id: int) -> None:
        del self.lines[mount_id]
        self.write()

    def write(self) -> None:
        self.path.write_text("".join(self.lines.values()))


def test_a_mountinfo_line_becomes_a_mount_with_escapes_undone():
    text = (
        rb"36 35 98:0 / /run/camtrap/cards/my\040card ro,nosuid master:1 shared:7 - vfat"
        rb" /dev/sdb1 ro,fmask=0333" + b"\n"
        rb"37 35 0:41 / /mnt/a\134b\011c rw,relatime - fuse.fusefat /tmp/card\040one.img rw" + b"\n"
    )
    first, second = parse_mountinfo(text)
    assert first == Mount(
        mount_id=36,
        mount_point=Path("/run/camtrap/cards/my card"),
        source="/dev/sdb1",
        fstype="vfat",
        read_only=True,
        device_number="98:0",
    )
    assert second.mount_point == Path("/mnt/a\\b\tc")
    assert second.source == "/tmp/card one.img"
    assert second.fstype == "fuse.fusefat"
    assert not second.read_only


def test_a_mount_read_only_by_its_superblock_is_read_only():
    line = b"40 22 8:17 / /media/card rw,relatime - vfat /dev/sdb1 ro,fmask=0022\n"
    (mount,) = parse_mountinfo(line)
    assert mount.read_only


def test_lines_that_are_not_mounts_are_skipped():
    text = b"garbage\n\n41 22 8:1 / /x rw - vfat /dev/sda1 rw\nx 22 8:1 / /y rw - vfat a rw\n"
    assert [m.mount_point for m in parse_mountinfo(text)] == [Path("/x")]


def test_the_real_mount_table_holds_the_proc_it_is_read_through():
    # Not "/": in a chroot (CI's fresh root) the root is no mount point of its own, but the
    # table is only readable through a mounted /proc.
    mounts = read_mounts()
    assert any(mount.mount_point == Path("/proc") for mount in mounts)
    assert all(mount.mount_point.is_absolute() for mount in mounts)


def test_the_first_look_reports_cards_already_mounted_and_only_under_the_roots(tmp_path):
    cards = tmp_path / "cards"
    table = Table(tmp_path / "mountinfo")
    table.mount(50, cards / "sdb1")
    table.mount(51, tmp_path / "media" / "usb", source="/dev/sdc1", dev="8:33")
    table.mount(52, Path(f"{cards}2") / "sdd1", source="/dev/sdd1", dev="8:49")
    table.mount(53, cards, source="/dev/sde1", dev="8:65")
    watcher = CardWatcher([cards], mountinfo=table.path)
    found = watcher.poll()
    assert [m.mount_point for m in found] == [cards / "sdb1", cards]
    assert watcher.poll() == []


def test_a_card_mounted_later_is_reported_once(tmp_path):
    cards = tmp_path / "cards"
    table = Table(tmp_path / "mountinfo")
    watcher = CardWatcher([cards], mountinfo=table.path)
    assert watcher.poll() == []
    table.mount(60, cards / "sdb1")
    assert [m.mount_id for m in watcher.poll()] == [60]
    assert watcher.poll() == []


def test_a_card_taken_out_and_put_back_is_new_again(tmp_path):
    cards = tmp_path / "cards"
    table = Table(tmp_path / "mountinfo")
    table.mount(60, cards / "sdb1")
    watcher = CardWatcher([cards], mountinfo=table.path)
    assert len(watcher.poll()) == 1
    table.unmount(60)
    assert watcher.poll() == []
    table.mount(60, cards / "sdb1")  # the kernel reuses the freed id
    assert [m.mount_id for m in watcher.poll()] == [60]


def test_another_card_swapped_in_between_two_looks_is_new(tmp_path):
    # The kernel hands the freed mount id to the next mount; the filesystem's device number
    # differs (a FUSE mount gets a new one each time), so the swap is not missed.
    cards = tmp_path / "cards"
    table = Table(tmp_path / "mountinfo")
    table.mount(60, cards / "sdb1", dev="0:41")
    watcher = CardWatcher([cards], mountinfo=table.path)
    assert len(watcher.poll()) == 1
    table.unmount(60)
    table.mount(60, cards / "sdb1", dev="0:42")
    assert [m.device_number for m in watcher.poll()] == ["0:42"]


def test_a_root_given_through_a_symlink_still_matches(tmp_path):
    real = tmp_path / "run" / "cards"
    real.mkdir(parents=True)
    link = tmp_path / "var-run"
    link.symlink_to(tmp_path / "run")
    table = Table(tmp_path / "mountinfo")
    table.mount(70, real / "sdb1")
    assert len(CardWatcher([link / "cards"], mountinfo=table.path).poll()) == 1


def test_an_unreadable_mount_table_is_said_once_and_never_raises(tmp_path, caplog):
    cards = tmp_path / "cards"
    missing = tmp_path / "no-mountinfo"
    watcher = CardWatcher([cards], mountinfo=missing)
    with caplog.at_level(logging.INFO, logger="device.importer.mounts"):
        assert watcher.poll() == []
        assert watcher.poll() == []
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert str(missing) in warnings[0].getMessage()
        table = Table(missing)
        table.mount(80, cards / "sdb1")
        assert [m.mount_id for m in watcher.poll()] == [80]
    assert any("again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_waiting_on_a_table_that_cannot_say_changes_times_out(tmp_path):
    table = Table(tmp_path / "mountinfo")
    watcher = CardWatcher([tmp_path / "cards"], mountinfo=table.path)
    watcher.poll()
    assert watcher.wait(0.01) is False
    watcher.close()


def test_the_import_starts_at_the_cards_root(tmp_path):
    assert card_root(tmp_path / "cards" / "sdb1") == tmp_path / "cards" / "sdb1"


def test_a_real_card_mount_is_noticed_as_it_appears_and_again_after_reinsertion(tmp_path):
    reason = fuse_available()
    if reason is not None:
        pytest.skip(reason)
    image = build_card(tmp_path / "card.img", {"DCIM/100RECNX/IMG_0001.JPG": b"photo"})
    cards = tmp_path / "cards"
    watcher = CardWatcher([cards])
    assert watcher.poll() == []
    with mounted_card(image, cards / "sdz1"):
        # The mount table says it changed: the agent's loop wakes without waiting its turn.
        assert watcher.wait(5.0) is True
        (found,) = watcher.poll()
        assert found.mount_point == Path(os.path.realpath(cards / "sdz1"))
        assert found.source == str(image)
        assert found.fstype == "fuse.fusefat"
        assert found.read_only
        assert watcher.poll() == []
    assert watcher.poll() == []
    with mounted_card(image, cards / "sdz1"):
        assert [m.mount_point.name for m in watcher.poll()] == ["sdz1"]
    watcher.close()
