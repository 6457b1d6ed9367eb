"""Noticing cards: the mount table read from ``/proc/self/mountinfo``, and each new mount under
the directories where cards are mounted reported once.

The agent does not listen to udev itself: a root-owned unit mounts the card (``camtrap card
mount``, started by the udev rule debian ships) and the agent, which runs unprivileged in its
own mount namespace, sees the mount appear in its mount table. Reading the table works the
same for a card mounted by that unit, by a technician, or by a desktop's automounter.
"""

from __future__ import annotations

import logging
import os
import re
import select
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "MOUNTINFO",
    "CardWatcher",
    "Mount",
    "MountTableChanges",
    "card_root",
    "mount_at",
    "parse_mountinfo",
    "read_mounts",
]

log = logging.getLogger(__name__)

MOUNTINFO = Path("/proc/self/mountinfo")

# mountinfo escapes space, tab, newline and backslash in paths as three octal digits.
_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One line of the mount table."""

    mount_id: int
    mount_point: Path
    # What was mounted: a device (/dev/sdb1), an image, or a FUSE helper's fsname.
    source: str
    # vfat, exfat, or fuse.<helper> / fuseblk for a FUSE mount.
    fstype: str
    read_only: bool
    # The mounted filesystem's st_dev, "major:minor"; the kernel reuses mount ids, so a card
    # swapped between two looks is told apart by this too.
    device_number: str = ""


def _unescape(field: bytes) -> str:
    raw = _OCTAL_ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), field)
    return os.fsdecode(raw)


def _parse_line(line: bytes) -> Mount | None:
    # "36 35 98:0 /root /mnt/point rw,noatime shared:1 - vfat /dev/sdb1 ro,fmask=0022"
    # The optional fields before "-" vary in number; everything after it is fixed.
    head, sep, tail = line.partition(b" - ")
    if not sep:
        return None
    fields = head.split(b" ")
    after = tail.split(b" ")
    if len(fields) < 6 or len(after) < 2:
        return None
    try:
        mount_id = int(fields[0])
    except ValueError:
        return None
    mount_options = fields[5].split(b",")
    super_options = after[2].split(b",") if len(after) > 2 else []
    return Mount(
        mount_id=mount_id,
        mount_point=Path(_unescape(fields[4])),
        source=_unescape(after[1]),
        fstype=_unescape(after[0]),
        read_only=b"ro" in mount_options or b"ro" in super_options,
        device_number=fields[2].decode("ascii", "replace"),
    )


def parse_mountinfo(data: bytes) -> list[Mount]:
    """Every well-formed line of a mountinfo text, in table order (a line that is not one is
    skipped: the kernel writes none, and a fake one in a test must not stop the rest)."""
    mounts = []
    for line in data.splitlines():
        mount = _parse_line(line.rstrip(b"\r"))
        if mount is not None:
            mounts.append(mount)
    return mounts


def read_mounts(mountinfo: Path = MOUNTINFO) -> list[Mount]:
    """The mount table; OSError when it cannot be read."""
    return parse_mountinfo(mountinfo.read_bytes())


def mount_at(path: Path, mountinfo: Path = MOUNTINFO) -> Mount | None:
    """The mount whose mount point is ``path`` (the top one, when mounts are stacked there)."""
    target = Path(os.path.realpath(path))
    found = None
    for mount in read_mounts(mountinfo):
        if mount.mount_point == target:
            found = mount  # later lines are mounted on top of earlier ones
    return found


def card_root(mount: Path) -> Path:
    """Where an import of the card mounted at ``mount`` starts: the whole card. Cameras write
    DCIM/100XXXXX, but some write their own folder names, and a card copied by hand may hold
    the photos anywhere; the import's scan skips what is not a photo."""
    return mount


def _is_at_or_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class MountTableChanges:
    """Wakes a waiter when the mount table changes: the kernel flags a change on an open
    mountinfo file to poll(2) (POLLPRI), so a card is noticed as it is mounted, not at the
    next look. A file that cannot be polled so (a plain file in a test) never wakes it."""

    def __init__(self, mountinfo: Path = MOUNTINFO) -> None:
        self._poll = select.poll()
        try:
            self._file: int | None = os.open(mountinfo, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._file = None
        else:
            self._poll.register(self._file, select.POLLPRI | select.POLLERR)

    def wait(self, timeout: float) -> bool:
        """Block until the table has changed since the last wait, or ``timeout`` seconds
        passed; True when it changed. Returns at once after a change it has not yet said."""
        if self._file is None:
            return False
        events = self._poll.poll(max(0.0, timeout) * 1000.0)
        return any(mask & (select.POLLPRI | select.POLLERR) for _, mask in events)

    def close(self) -> None:
        if self._file is not None:
            self._poll.unregister(self._file)
            os.close(self._file)
            self._file = None

    def __enter__(self) -> MountTableChanges:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_Key = tuple[int, str, Path, str]


def _key(mount: Mount) -> _Key:
    return (mount.mount_id, mount.device_number, mount.mount_point, mount.source)


class CardWatcher:
    """Reports mounts at or under ``roots`` that are new since the last ``poll``.

    The first poll reports those already there: a card inserted while the agent was down is
    imported too. A card unmounted and mounted again is new again (the import's sha256 dedup
    makes a second look at the same card cost reading, never storing twice).
    """

    def __init__(self, roots: Sequence[Path], *, mountinfo: Path = MOUNTINFO) -> None:
        # The table names real paths; a root given through a symlink (/var/run) must match.
        self._roots = tuple(Path(os.path.realpath(root)) for root in roots)
        self._mountinfo = mountinfo
        self._seen: set[_Key] = set()
        self._failing = False
        self._changes: MountTableChanges | None = None

    @property
    def roots(self) -> tuple[Path, ...]:
        return self._roots

    def poll(self) -> list[Mount]:
        """New card mounts, in mount order; [] when the table cannot be read (said once in
        the log until it can be read again)."""
        if self._changes is None:
            # Opened before the first read: a change after that read wakes the next wait.
            self._changes = MountTableChanges(self._mountinfo)
        try:
            mounts = read_mounts(self._mountinfo)
        except OSError as exc:
            if not self._failing:
                log.warning(
                    "cannot read the mount table %s (%s); cards are not noticed until it can",
                    self._mountinfo,
                    exc.strerror or exc,
                )
                self._failing = True
            return []
        if self._failing:
            log.info("the mount table %s can be read again", self._mountinfo)
            self._failing = False
        cards = [
            mount
            for mount in mounts
            if any(_is_at_or_under(mount.mount_point, root) for root in self._roots)
        ]
        new = [mount for mount in cards if _key(mount) not in self._seen]
        self._seen = {_key(mount) for mount in cards}
        return new

    def wait(self, timeout: float) -> bool:
        """Block until the mount table changes or ``timeout`` passes (True when it changed):
        call ``poll`` after it. The agent's loop waits here instead of sleeping."""
        if self._changes is None:
            self._changes = MountTableChanges(self._mountinfo)
        return self._changes.wait(timeout)

    def close(self) -> None:
        if self._changes is not None:
            self._changes.close()
            self._changes = None
