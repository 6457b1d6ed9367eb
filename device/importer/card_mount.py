"""Mounting a trail camera's card read-only where the agent looks for cards.

``camtrap card mount`` runs as root from ``camtrap-card@.service``, which the udev rule starts
when a USB card reader's FAT or exFAT partition appears. It reads the boot sector itself to
know the filesystem, tries the kernel's driver (``mount -t vfat|exfat``), and when the kernel
has none (some of the machines camtrap runs on have no vfat) mounts through FUSE instead
(``fusefat``, ``mount.exfat-fuse``). Every mount is read-only, nosuid, nodev: the originals on
the card are never written, and nothing on a card is run.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from contextlib import suppress
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from device.config import CARDS_DIR
from device.errors import UserError, one_line, shown_path
from device.exitcodes import Exit
from device.importer.mounts import Mount, mount_at, read_mounts

__all__ = [
    "CARD_FSTYPES",
    "DEFAULT_CARDS_DIR",
    "CardFilesystem",
    "MountedCard",
    "card_filesystem",
    "mount_card",
    "sniff_filesystem",
    "unmount_card",
]

# Where camtrap-card@.service mounts cards, one directory per kernel device name, and where
# the agent watches for them. Inside the agent's runtime directory: gone at reboot, like the
# mounts.
DEFAULT_CARDS_DIR = CARDS_DIR

# Filesystem types (as the mount table names them) that a card mount can have; unmount_card
# refuses anything else, so a slip of the finger never unmounts the data disk.
CARD_FSTYPES = frozenset({"vfat", "msdos", "exfat", "fuse.fusefat", "fuseblk", "fuse"})

# A mount helper that has not finished in this long is stuck (a dying card reader).
MOUNT_TIMEOUT_S = 60.0
# What mount(8) accepts for a card, besides "ro": nothing on a card is run or is a device.
_SAFE_OPTIONS = "ro,nosuid,nodev,noexec"
# Everyone may read a card (the agent runs as its own user), nobody may write or run it.
_VFAT_MASKS = "fmask=0333,dmask=0222"
_SECTOR = 512
# Where the boot sector names its filesystem (Microsoft's FAT and exFAT specifications).
_EXFAT_NAME = (3, b"EXFAT   ")
_FAT32_NAME = (82, b"FAT32   ")
_FAT1216_NAME = 54
_SIGNATURE = (510, b"\x55\xaa")
_PARTITION_TYPES = tuple(446 + 16 * i + 4 for i in range(4))
# mount.exfat-fuse and losetup live in /sbin; a technician's PATH may not have it.
_SBIN = ("/usr/sbin", "/sbin")
_TOOL_PREFIXES = ("fuse:", "mount:", "umount:", "losetup:", "fusermount:", "mount.exfat")


class CardFilesystem(Enum):
    FAT12 = "FAT12"
    FAT16 = "FAT16"
    FAT32 = "FAT32"
    EXFAT = "exFAT"

    @property
    def kernel_type(self) -> str:
        return "exfat" if self is CardFilesystem.EXFAT else "vfat"

    @property
    def fuse_helper(self) -> str:
        return "mount.exfat-fuse" if self is CardFilesystem.EXFAT else "fusefat"

    @property
    def debian_package(self) -> str:
        return "exfat-fuse" if self is CardFilesystem.EXFAT else "fusefat"


@dataclass(frozen=True)
class MountedCard:
    device: Path
    filesystem: CardFilesystem
    # "kernel", or the FUSE helper that serves it ("fusefat", "mount.exfat-fuse").
    driver: str
    mount: Mount


def sniff_filesystem(boot: bytes) -> CardFilesystem | None:
    """The filesystem a boot sector (the first 512 bytes) belongs to, or None."""
    if len(boot) < _SECTOR or boot[_SIGNATURE[0] : _SIGNATURE[0] + 2] != _SIGNATURE[1]:
        return None
    offset, name = _EXFAT_NAME
    if boot[offset : offset + len(name)] == name:
        return CardFilesystem.EXFAT
    offset, name = _FAT32_NAME
    if boot[offset : offset + len(name)] == name:
        return CardFilesystem.FAT32
    fat1216 = boot[_FAT1216_NAME : _FAT1216_NAME + 8]
    if fat1216 == b"FAT12   ":
        return CardFilesystem.FAT12
    # Some formatters write a bare "FAT"; FAT12 and FAT16 mount alike.
    if fat1216 in (b"FAT16   ", b"FAT     "):
        return CardFilesystem.FAT16
    return None


def _has_partition_table(boot: bytes) -> bool:
    return len(boot) >= _SECTOR and any(boot[i] != 0 for i in _PARTITION_TYPES)


def card_filesystem(device: Path) -> CardFilesystem:
    """The card's filesystem, read from its boot sector; UserError naming the device when it
    is missing, unreadable, or not FAT/exFAT."""
    shown = shown_path(device)
    try:
        with open(device, "rb") as handle:
            boot = handle.read(_SECTOR)
    except FileNotFoundError:
        raise UserError(f"{shown}: no such device; is the card inserted?", Exit.NO_INPUT) from None
    except IsADirectoryError:
        raise UserError(
            f"{shown} is a directory, not a card; to import a folder run: camtrap import {shown}",
            Exit.USAGE,
        ) from None
    except PermissionError:
        raise UserError(
            f"{shown}: permission denied reading the card; mounting needs root (sudo)",
            Exit.NO_INPUT,
        ) from None
    except OSError as exc:
        raise UserError(
            f"{shown}: cannot read the card ({exc.strerror or exc}); reseat it or try another"
            " card reader",
            Exit.UNAVAILABLE,
        ) from None
    found = sniff_filesystem(boot)
    if found is not None:
        return found
    if _has_partition_table(boot):
        raise UserError(
            f"{shown} is a whole disk with a partition table; mount its partition instead"
            f" (e.g. {shown}1)",
            Exit.DATA_ERROR,
        )
    raise UserError(
        f"{shown} is not a FAT or exFAT card (no FAT12/16/32 or exFAT boot sector);"
        " camtrap mounts only trail-camera cards",
        Exit.DATA_ERROR,
    )


def mount_card(device: Path, at: Path) -> MountedCard:
    """Mount the FAT/exFAT card ``device`` (a block device, or an image file) read-only at
    ``at``, made if missing; UserError naming the device and what to do otherwise."""
    device = Path(os.path.abspath(device))
    at = Path(os.path.abspath(at))
    filesystem = card_filesystem(device)
    _refuse_if_mounted(device)
    created = _prepare_mount_point(at)
    try:
        driver = _mount(device, at, filesystem)
        mount = _mounted_read_only(device, at)
    except BaseException:
        if created:
            _remove_quietly(at)
        raise
    return MountedCard(device=device, filesystem=filesystem, driver=driver, mount=mount)


def unmount_card(at: Path) -> bool:
    """Unmount the card at ``at``; False when nothing is mounted there. A card still being read
    (an import in progress) is detached at once and freed when its last file is closed."""
    at = Path(os.path.abspath(at))
    mount = _mount_at(at)
    if mount is None:
        return False
    if mount.fstype not in CARD_FSTYPES:
        raise UserError(
            f"{shown_path(at)} holds a {mount.fstype} filesystem, not a card; camtrap card"
            " unmount only unmounts FAT/exFAT cards",
            Exit.USAGE,
        )
    fuse = mount.fstype.startswith("fuse")
    if os.geteuid() == 0 or not fuse:
        plain, lazy = ["umount", str(at)], ["umount", "--lazy", str(at)]
    else:
        # fuse3 (which Debian lets stand in for fuse) names it fusermount3.
        fusermount = _tool("fusermount") or _tool("fusermount3") or "fusermount"
        plain, lazy = [fusermount, "-u", str(at)], [fusermount, "-u", "-z", str(at)]
    result = _run(plain, at)
    if result.returncode != 0 and _is_busy(result):
        result = _run(lazy, at)
    after = _mount_at(at)
    if after is not None and after.mount_id == mount.mount_id:
        raise UserError(
            f"cannot unmount {shown_path(at)}: {_tool_message(result)}", Exit.UNAVAILABLE
        )
    return True


def _mount_at(at: Path) -> Mount | None:
    try:
        return mount_at(at)
    except OSError as exc:
        raise UserError(
            f"cannot read the mount table ({exc.strerror or exc})", Exit.UNAVAILABLE
        ) from None


def _refuse_if_mounted(device: Path) -> None:
    """A device mounted already (the Pi's own boot partition, a desktop's automount) is not
    mounted a second time: two mounts of one FAT disagree about it."""
    number = ""
    try:
        info = device.stat()
    except OSError:
        info = None
    if info is not None and stat.S_ISBLK(info.st_mode):
        number = f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}"
    try:
        mounts = read_mounts()
    except OSError:
        return  # the mount itself will say what is wrong
    for mount in mounts:
        if mount.source == str(device) or (number and mount.device_number == number):
            raise UserError(
                f"{shown_path(device)} is already mounted at {shown_path(mount.mount_point)},"
                " so it is left alone: a card is mounted once, read-only, by camtrap (unmount"
                " it there first if it is a camera's card)",
                Exit.USAGE,
            )


def _prepare_mount_point(at: Path) -> bool:
    """Make sure ``at`` is an empty directory nothing is mounted on; True if it was made."""
    shown = shown_path(at)
    if _mount_at(at) is not None:
        raise UserError(
            f"{shown} already has a filesystem mounted; unmount it first"
            f" (camtrap card unmount {shown})",
            Exit.CANT_CREATE,
        )
    if at.is_dir():
        try:
            empty = next(at.iterdir(), None) is None
        except OSError as exc:
            raise UserError(f"{shown}: {exc.strerror or exc}", Exit.CANT_CREATE) from None
        if not empty:
            raise UserError(
                f"{shown} is not empty; a card is mounted on an empty directory",
                Exit.CANT_CREATE,
            )
        return False
    try:
        at.mkdir(parents=True)
    except OSError as exc:
        raise UserError(
            f"cannot make the mount point {shown}: {exc.strerror or exc}", Exit.CANT_CREATE
        ) from None
    return True


def _mount(device: Path, at: Path, filesystem: CardFilesystem) -> str:
    """Mount with the kernel's driver, or its FUSE helper when the kernel lacks one; the
    driver's name."""
    root = os.geteuid() == 0
    kernel_has_it = _kernel_has(filesystem.kernel_type)
    # The kernel loads vfat/exfat on demand, so as root it is always worth asking; a user
    # cannot mount(8) a card at all, and FUSE is the only way.
    if root and _tool("mount") is not None:
        options = f"{_SAFE_OPTIONS},{_VFAT_MASKS}"
        if filesystem.kernel_type == "vfat":
            options += ",utf8"  # long names as UTF-8, whatever the kernel's default charset
        if device.is_file():
            options += ",loop"
        command = ["mount", "-t", filesystem.kernel_type, "-o", options, str(device), str(at)]
        result = _run(command, device)
        if result.returncode == 0:
            return "kernel"
        if kernel_has_it or _kernel_has(filesystem.kernel_type):
            raise UserError(
                f"cannot mount {shown_path(device)} ({filesystem.value}):"
                f" {_tool_message(result)}; run fsck.{filesystem.kernel_type} -n on it, or"
                " copy the photos off on another computer",
                Exit.UNAVAILABLE,
            )
    return _mount_fuse(device, at, filesystem, root)


def _mount_fuse(device: Path, at: Path, filesystem: CardFilesystem, root: bool) -> str:
    helper = _tool(filesystem.fuse_helper)
    if helper is None:
        raise UserError(
            f"cannot mount {shown_path(device)}: this kernel has no {filesystem.kernel_type}"
            f" driver and {filesystem.fuse_helper} is not installed"
            f" (apt install {filesystem.debian_package})",
            Exit.UNAVAILABLE,
        )
    if filesystem is CardFilesystem.EXFAT:
        # exfat-fuse sets allow_other itself; it has its own masks.
        options = f"{_SAFE_OPTIONS},fmask=0333,dmask=0222"
    else:
        # FUSE's umask applies to directories too, so they keep their search bit.
        name = str(device).replace("\\", "\\\\").replace(",", "\\,")
        options = f"{_SAFE_OPTIONS},umask=0222,fsname={name},subtype=fusefat"
        if root:
            # Root's FUSE mount is root's alone unless allowed; the agent reads as camtrap.
            options += ",allow_other"
    if filesystem is CardFilesystem.EXFAT and device.is_file():
        return _mount_exfat_image(helper, device, at, options, root)
    result = _run([helper, "-o", options, str(device), str(at)], device)
    if result.returncode != 0:
        raise UserError(
            f"cannot mount {shown_path(device)} ({filesystem.value}) with"
            f" {filesystem.fuse_helper}: {_tool_message(result)}",
            Exit.UNAVAILABLE,
        )
    return filesystem.fuse_helper


def _mount_exfat_image(helper: str, image: Path, at: Path, options: str, root: bool) -> str:
    """exfat-fuse run by root mounts only block devices: an image goes through a read-only
    loop device, detached at once so the kernel frees it when the mount goes."""
    losetup = _tool("losetup")
    if not root or losetup is None:
        raise UserError(
            f"cannot mount the exFAT image {shown_path(image)}: exfat-fuse needs a loop device"
            " for an image file, which needs root and losetup (util-linux)",
            Exit.UNAVAILABLE,
        )
    attach = _run([losetup, "--find", "--show", "--read-only", str(image)], image)
    if attach.returncode != 0:
        raise UserError(
            f"cannot attach {shown_path(image)} to a loop device: {_tool_message(attach)}",
            Exit.UNAVAILABLE,
        )
    loop = attach.stdout.strip()
    try:
        result = _run([helper, "-o", options, loop, str(at)], image)
    finally:
        _run([losetup, "--detach", loop], image)
    if result.returncode != 0:
        raise UserError(
            f"cannot mount {shown_path(image)} (exFAT) with mount.exfat-fuse:"
            f" {_tool_message(result)}",
            Exit.UNAVAILABLE,
        )
    return "mount.exfat-fuse"


def _mounted_read_only(device: Path, at: Path) -> Mount:
    """The new mount, checked to be read-only: one that is not is taken down again."""
    mount = _mount_at(at)
    if mount is None:
        raise UserError(
            f"mounting {shown_path(device)} reported success but nothing is mounted at"
            f" {shown_path(at)}",
            Exit.UNAVAILABLE,
        )
    if not mount.read_only:
        unmount_card(at)
        raise UserError(
            f"{shown_path(device)} was mounted writable at {shown_path(at)}, so it was"
            " unmounted again: camtrap never mounts a card for writing",
            Exit.UNAVAILABLE,
        )
    return mount


def _kernel_has(fstype: str) -> bool:
    try:
        text = Path("/proc/filesystems").read_text()
    except OSError:
        return False
    return any(line.split()[-1:] == [fstype] for line in text.splitlines())


def _tool(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), *_SBIN])
    return shutil.which(name, path=path)


def _run(command: list[str], subject: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=MOUNT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise UserError(
            f"{command[0]} did not finish within {MOUNT_TIMEOUT_S:.0f} s for"
            f" {shown_path(subject)}; the card or its reader is not answering: reseat it",
            Exit.UNAVAILABLE,
        ) from None
    except OSError as exc:
        raise UserError(
            f"cannot run {command[0]} for {shown_path(subject)}: {exc.strerror or exc}",
            Exit.UNAVAILABLE,
        ) from None


def _is_busy(result: subprocess.CompletedProcess[str]) -> bool:
    return "busy" in (result.stderr + result.stdout).lower()


def _tool_message(result: subprocess.CompletedProcess[str]) -> str:
    """The line of a helper's output that says what went wrong. The tools put their name
    first on it ("mount: ...", "fuse: ..."); fusefat prints debug notes on the same stream
    and mount(8) adds a hint line after it, so a named line is preferred to the last one."""
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if line.startswith(_TOOL_PREFIXES):
            return one_line(line)
    if lines:
        return one_line(lines[-1])
    return f"exit status {result.returncode}"


def _remove_quietly(directory: Path) -> None:
    with suppress(OSError):
        directory.rmdir()
