"""Trail-camera cards for tests: real FAT16/FAT32/exFAT images, mounted through FUSE.

The kernels these tests run on have no vfat driver, so a card is an image file mounted by
Debian's FUSE helpers, read-only, as ``camtrap card mount`` falls back to doing:

- ``build_card`` writes the image with dosfstools and mtools (``mcopy`` into the image file,
  never through a mount): 10,000 small files take about a second. exFAT images are filled
  through exfat-fuse on a loop device (root only).
- ``mounted_card`` mounts it with ``fusefat`` (FAT) or ``mount.exfat-fuse`` (exFAT) and
  unmounts it at exit; ``CardMount.pull()`` yanks the card out: the FUSE process is killed, so
  every read of the card fails with OSError (ENOTCONN), as a pulled card's reads fail.

What a test reading a card through fusefat 0.1a (Debian 12) meets, besides FAT's own quirks
(8.3 names, 2-second local-time stamps):
- file times read back one month late (it forgets that struct tm counts months from 0); the
  image holds the time asked for, as mtools and any camera or computer read it;
- the volume label shows as an empty file named like the label at the card's root;
- an 8.3 name written in lower case (img_0001.jpg) reads back upper case;
- each file costs about a millisecond to look up and open in a 1,000-file folder.
Mounting with fusefat's ``rw+`` is not offered: it rewrites the image on mount and writes
broken short names.
"""

from __future__ import annotations

import math
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath

from device.importer.card_mount import CardFilesystem, sniff_filesystem
from device.importer.mounts import MountTableChanges, mount_at

__all__ = [
    "DEFAULT_MTIME",
    "CardMount",
    "CardToolMissing",
    "build_card",
    "fuse_available",
    "mounted_card",
]

FILESYSTEMS = ("fat16", "fat32", "exfat")
# Every file and directory gets this stamp unless ``mtimes`` names it: the same content makes
# the same image (mkfs runs with --invariant too), as the same card inserted twice would be.
DEFAULT_MTIME = datetime(2024, 6, 1, 12, 0, 0)
MiB = 1024 * 1024
# Cluster sizes chosen so the image's size can be worked out from the content (mkfs picks
# one from the size otherwise). FAT32's are small so that its 65,525-cluster minimum makes a
# 66 MB image, not a 260 MB one every test that hashes it has to read.
_FAT32_CLUSTER = 1024
_FAT32_MIN_CLUSTERS = 66_000  # FAT32 needs at least 65,525 clusters
_FAT16_MIN_CLUSTERS = 4_200  # and FAT16 at least 4,085, at most 65,524
_FAT16_MAX_CLUSTERS = 64_000
_EXFAT_CLUSTER = 4096
_DIR_ENTRY = 32
_TOOL_TIMEOUT_S = 300.0
_MOUNT_TIMEOUT_S = 20.0
_EXIT_TIMEOUT_S = 10.0
_PACKAGES = {
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "mattrib": "mtools",
    "fusefat": "fusefat",
    "fusermount": "fuse",
    "mkfs.exfat": "exfatprogs",
    "mount.exfat-fuse": "exfat-fuse",
    "losetup": "mount",
}


class CardToolMissing(RuntimeError):
    """A tool the card images need is not installed (``make test`` installs them all)."""


def fuse_available(fs: str = "fat32") -> str | None:
    """None when cards of ``fs`` can be mounted here, else why not: the only reason for a test
    to skip. Missing tools are no reason (the test fails and says which package)."""
    fuse = Path("/dev/fuse")
    if not fuse.exists():
        return "no /dev/fuse: FUSE is not available on this machine (a container without it?)"
    try:
        os.close(os.open(fuse, os.O_RDWR))
    except OSError as exc:
        return f"/dev/fuse cannot be opened ({exc.strerror}): FUSE is not available here"
    if fs == "exfat" and os.geteuid() != 0:
        return "exFAT card images need root: exfat-fuse mounts them through a loop device"
    return None


# ----------------------------------------------------------------------------- building


@dataclass(frozen=True)
class _Entry:
    path: PurePosixPath
    data: bytes | None  # None: a directory


def build_card(
    image: Path,
    files: Mapping[str, bytes],
    *,
    fs: str = "fat32",
    label: str | None = "RECONYX",
    size_mb: int | None = None,
    mtimes: Mapping[str, datetime] | None = None,
    hidden: Collection[str] = (),
) -> Path:
    """Write a card image holding ``files`` at their relative paths ("DCIM/100RECNX/IMG_0001.
    JPG"); parent directories are made as needed, and a key ending in "/" is an empty
    directory (".Trashes/"). ``mtimes`` stamps files or directories with the wall-clock time
    FAT stores (it has no zone: an aware datetime's own wall clock is written; FAT keeps even
    seconds). ``hidden`` paths get FAT's hidden attribute. The size is worked out from the
    content unless ``size_mb`` is given; ``label`` None writes no volume label."""
    if fs not in FILESYSTEMS:
        raise ValueError(f"fs must be one of {', '.join(FILESYSTEMS)}, not {fs!r}")
    entries = _entries(files)
    stamps = _stamps(entries, mtimes or {})
    hidden_paths = [_relative(name) for name in hidden]
    known = {entry.path for entry in entries}
    for path in hidden_paths:
        if path not in known:
            raise ValueError(f"hidden path {path} is not on the card")
    if hidden_paths and fs == "exfat":
        raise ValueError("hidden attributes are set on FAT cards only (no exFAT tool sets them)")
    size = size_mb * MiB if size_mb is not None else _size_for(fs, entries)
    image = Path(image)
    image.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_dir(image.parent, sum(len(e.data or b"") for e in entries))
    with tempfile.TemporaryDirectory(prefix="camtrap-card-stage-", dir=staging) as tmp:
        stage = Path(tmp) / "card"
        _stage(stage, entries, stamps)
        if fs == "exfat":
            _build_exfat(image, stage, size, label)
        else:
            # Sized from the content: the cluster size it was worked out with; a size given
            # in size_mb leaves the cluster size to mkfs.
            cluster = None
            if size_mb is None:
                cluster = _FAT32_CLUSTER if fs == "fat32" else _fat16_cluster(entries)
            _build_fat(image, stage, size, label, fs, cluster, entries, hidden_paths)
    return image


def _parts(name: str) -> tuple[str, ...]:
    parts = tuple(name.rstrip("/").split("/"))
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"card path {name!r} must be relative, inside the card")
    return parts


def _relative(name: str) -> PurePosixPath:
    return PurePosixPath(*_parts(name))


def _entries(files: Mapping[str, bytes]) -> list[_Entry]:
    """Every file and directory of the card, parents first; names that FAT would take for the
    same one (case differs) are refused, as a camera could never have written both."""
    # Tuples of path parts, not PurePosixPath: 10,000 files must take milliseconds here.
    found: dict[tuple[str, ...], bytes | None] = {}
    for name, data in files.items():
        parts = _parts(name)
        found[parts] = None if name.endswith("/") else bytes(data)
        for depth in range(1, len(parts)):
            parent = parts[:depth]
            if found.get(parent) is not None:
                raise ValueError(f"{'/'.join(parent)} is a file and a directory")
            found.setdefault(parent, None)
    folded: dict[str, tuple[str, ...]] = {}
    for parts in found:
        other = folded.setdefault("/".join(parts).casefold(), parts)
        if other != parts:
            raise ValueError(
                f"{'/'.join(parts)} and {'/'.join(other)} are one name on FAT (case is ignored)"
            )
    ordered = sorted(found, key=lambda parts: (len(parts), parts))
    return [_Entry(PurePosixPath(*parts), found[parts]) for parts in ordered]


def _staging_dir(beside: Path, content: int) -> Path:
    """Where the card's tree is laid out before it is copied in: RAM (/dev/shm) when it has
    room, as creating 10,000 files there is ten times faster than on a disk; else beside the
    image. The tree is removed when the image is written."""
    shm = Path("/dev/shm")
    with suppress(OSError):
        free = os.statvfs(shm)
        if os.access(shm, os.W_OK) and free.f_bavail * free.f_frsize > 4 * content + 64 * MiB:
            return shm
    return beside


def _stamps(entries: list[_Entry], mtimes: Mapping[str, datetime]) -> dict[PurePosixPath, float]:
    """Each entry's mtime as a POSIX time read as UTC: the tools below run with TZ=UTC, so
    the stamp FAT stores is the datetime's wall clock exactly."""
    known = {entry.path for entry in entries}
    stamps = {path: _as_utc(DEFAULT_MTIME) for path in known}
    for name, when in mtimes.items():
        path = _relative(name)
        if path not in known:
            raise ValueError(f"mtime given for {path}, which is not on the card")
        stamps[path] = _as_utc(when)
    return stamps


def _as_utc(when: datetime) -> float:
    wall = when.replace(tzinfo=None)
    return (wall - datetime(1970, 1, 1)).total_seconds()


def _stage(stage: Path, entries: list[_Entry], stamps: Mapping[PurePosixPath, float]) -> None:
    stage.mkdir()
    for entry in entries:
        target = stage.joinpath(*entry.path.parts)
        if entry.data is None:
            target.mkdir()
        else:
            target.write_bytes(entry.data)
    # Deepest first: writing into a directory changes its mtime.
    for entry in sorted(entries, key=lambda e: -len(e.path.parts)):
        stamp = stamps[entry.path]
        os.utime(stage.joinpath(*entry.path.parts), (stamp, stamp))
    os.utime(stage, (_as_utc(DEFAULT_MTIME),) * 2)


def _clusters(size: int, cluster: int) -> int:
    return math.ceil(size / cluster)


def _needed_clusters(entries: list[_Entry], cluster: int) -> int:
    """Clusters the content takes: file data, plus each directory's entries (a generous 32
    bytes per 13 characters of long name, as VFAT and exFAT both spend about that)."""
    children: dict[PurePosixPath, int] = {}
    total = 0
    for entry in entries:
        if entry.data is not None:
            total += _clusters(len(entry.data), cluster)
        name_entries = 3 + math.ceil(len(entry.path.name) / 13)
        children[entry.path.parent] = children.get(entry.path.parent, 0) + name_entries
    for count in children.values():
        total += _clusters((count + 3) * _DIR_ENTRY, cluster)
    return total


def _size_for(fs: str, entries: list[_Entry]) -> int:
    if fs == "fat32":
        needed = _needed_clusters(entries, _FAT32_CLUSTER)
        clusters = max(_FAT32_MIN_CLUSTERS, math.ceil(needed * 1.1))
        fat_bytes = 2 * 4 * (clusters + 2)
        return _round_mib(clusters * _FAT32_CLUSTER + fat_bytes + MiB)
    if fs == "fat16":
        cluster = _fat16_cluster(entries)
        clusters = max(_FAT16_MIN_CLUSTERS, math.ceil(_needed_clusters(entries, cluster) * 1.1))
        fat_bytes = 2 * 2 * (clusters + 2)
        return _round_mib(clusters * cluster + fat_bytes + _root_entries(entries) * 32 + MiB)
    needed = _needed_clusters(entries, _EXFAT_CLUSTER)
    return _round_mib(math.ceil(needed * 1.1) * _EXFAT_CLUSTER + 8 * MiB)


def _fat16_cluster(entries: list[_Entry]) -> int:
    cluster = 2048
    while _needed_clusters(entries, cluster) * 1.1 > _FAT16_MAX_CLUSTERS:
        cluster *= 2
        if cluster > 32768:
            raise ValueError("too much content for a FAT16 card (2 GB at most): use fat32")
    return cluster


def _root_entries(entries: list[_Entry]) -> int:
    """FAT16's root directory has a fixed number of slots, made with the filesystem."""
    top = sum(3 + math.ceil(len(e.path.name) / 13) for e in entries if len(e.path.parts) == 1)
    return max(512, math.ceil(top * 1.25 / 16) * 16)


def _round_mib(size: int) -> int:
    return math.ceil(size / MiB) * MiB


def _tool(name: str) -> str:
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if found is None:
        found = shutil.which(name, path="/sbin")
    if found is None:
        package = _PACKAGES.get(name, name)
        raise CardToolMissing(f"{name} is not installed: apt install {package} (make test does)")
    return found


def _env() -> dict[str, str]:
    # UTC so file stamps are written as given; UTF-8 so long names keep their characters; no
    # user mtools config; and no mtools check that the image's size matches a floppy.
    return {
        **os.environ,
        "TZ": "UTC",
        "LC_ALL": "C.UTF-8",
        "MTOOLSRC": "/dev/null",
        "MTOOLS_SKIP_CHECK": "1",
    }


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        env=_env(),
        timeout=_TOOL_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{Path(command[0]).name} failed ({result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-2000:]}"
        )
    return result


def _blank_image(image: Path, size: int) -> None:
    with open(image, "wb") as handle:
        handle.truncate(size)  # sparse: a 300 MB card costs what its content does


def _build_fat(
    image: Path,
    stage: Path,
    size: int,
    label: str | None,
    fs: str,
    cluster: int | None,
    entries: list[_Entry],
    hidden: list[PurePosixPath],
) -> None:
    _blank_image(image, size)
    mkfs = [_tool("mkfs.vfat"), "--invariant", "-S", "512", "-F", fs.removeprefix("fat")]
    if cluster is not None:
        mkfs += ["-s", str(cluster // 512)]
    if fs == "fat16":
        mkfs += ["-r", str(_root_entries(entries))]
    if label is not None:
        mkfs += ["-n", label]
    _run([*mkfs, str(image)])
    top = sorted(stage.iterdir())
    if top:
        # -s recursive, -p attributes, -m mtimes, -D o: never ask
        # about a name clash (there is none: _entries refused them).
        mcopy = [_tool("mcopy"), "-i", str(image), "-s", "-p", "-m", "-D", "o"]
        _run([*mcopy, *(str(p) for p in top), "::/"])
    for path in hidden:
        _run([_tool("mattrib"), "-i", str(image), "+h", f"::/{path}"])


def _build_exfat(image: Path, stage: Path, size: int, label: str | None) -> None:
    reason = fuse_available("exfat")
    if reason is not None:
        raise RuntimeError(reason)
    _blank_image(image, size)
    mkfs = [_tool("mkfs.exfat"), "-c", f"{_EXFAT_CLUSTER // 1024}K"]
    if label is not None:
        mkfs += ["-L", label]
    _run([*mkfs, str(image)])
    with (
        tempfile.TemporaryDirectory(prefix=".card-fill-", dir=image.parent) as tmp,
        _exfat_mount(image, Path(tmp), read_only=False) as card,
    ):
        shutil.copytree(stage, card.path, dirs_exist_ok=True)
        os.utime(card.path, (_as_utc(DEFAULT_MTIME),) * 2)


# ----------------------------------------------------------------------------- mounting


@dataclass
class CardMount:
    """A card image mounted at ``path`` by a FUSE process this test owns."""

    path: Path
    image: Path
    _pidfd: int
    _child: subprocess.Popen[bytes] | None = None
    pulled: bool = False
    _closed: bool = field(default=False, repr=False)

    def pull(self) -> None:
        """Yank the card: the FUSE process is killed, and on return every access to the
        card (an open file, a new open, a listing) fails with OSError (ENOTCONN). The dead
        mount stays until the ``mounted_card`` block ends, as a pulled card's mount stays
        until it is unmounted; mount the image again (elsewhere, or after the block) to put
        the card back."""
        if self.pulled:
            return
        self.pulled = True
        with suppress(ProcessLookupError):
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        # Its /dev/fuse connection dies with it: wait for the exit, not for a guess of time.
        _wait_for_exit(self._pidfd, _EXIT_TIMEOUT_S)
        if self._child is not None:
            self._child.wait(timeout=_EXIT_TIMEOUT_S)

    def _unmount(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.pulled:
                _fusermount(self.path, lazy=True)
            elif not _fusermount(self.path, lazy=False):
                # Still busy (a test holds a file open): detach now, stop the server.
                _fusermount(self.path, lazy=True)
                with suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            if not _wait_for_exit(self._pidfd, _EXIT_TIMEOUT_S):
                with suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
                _wait_for_exit(self._pidfd, _EXIT_TIMEOUT_S)
            if self._child is not None:
                self._child.wait(timeout=_EXIT_TIMEOUT_S)
            _wait_for_mount(self.path, present=False, timeout=_MOUNT_TIMEOUT_S)
        finally:
            os.close(self._pidfd)


@contextmanager
def mounted_card(image: Path, at: Path, *, read_only: bool = True) -> Iterator[CardMount]:
    """Mount the card image at ``at`` (made if missing) through FUSE; unmounted at exit, after
    a ``pull()`` too. ``read_only=False`` is for exFAT only (fusefat's writing is broken)."""
    image = Path(image).absolute()
    with open(image, "rb") as handle:
        filesystem = sniff_filesystem(handle.read(512))
    if filesystem is None:
        raise ValueError(f"{image} holds no FAT or exFAT filesystem")
    at = Path(at).absolute()
    at.mkdir(parents=True, exist_ok=True)
    if filesystem is CardFilesystem.EXFAT:
        with _exfat_mount(image, at, read_only=read_only) as card:
            yield card
        return
    if not read_only:
        raise ValueError("FAT cards mount read-only: fusefat's rw+ mode corrupts the image")
    with _fusefat_mount(image, at) as card:
        yield card


@contextmanager
def _fusefat_mount(image: Path, at: Path) -> Iterator[CardMount]:
    # -f: in the foreground, so this test owns the process it may kill. fsname: the mount
    # table names the image, as it names a card's device. fusefat chatters on stdout/stderr
    # for every request: a file, never a pipe nobody drains.
    with tempfile.TemporaryFile() as chatter:
        child = subprocess.Popen(
            [
                _tool("fusefat"),
                "-f",
                "-o",
                f"ro,fsname={image},subtype=fusefat",
                str(image),
                str(at),
            ],
            stdin=subprocess.DEVNULL,
            stdout=chatter,
            stderr=chatter,
            env=_env(),
        )
        pidfd = os.pidfd_open(child.pid)
        card = CardMount(path=at, image=image, _pidfd=pidfd, _child=child)
        try:
            if not _wait_for_mount(at, present=True, timeout=_MOUNT_TIMEOUT_S, child=child):
                chatter.seek(0)
                said = chatter.read().decode(errors="replace").strip()[-1000:]
                raise RuntimeError(f"fusefat did not mount {image} at {at}: {said}")
            yield card
        finally:
            if child.poll() is None or mount_at(at) is not None:
                card._unmount()
            else:
                os.close(pidfd)


@contextmanager
def _exfat_mount(image: Path, at: Path, *, read_only: bool) -> Iterator[CardMount]:
    """exfat-fuse mounts, as root, only block devices: the image goes through a loop device,
    detached at once (the kernel frees it when the mount goes)."""
    losetup = [_tool("losetup"), "--find", "--show", *(["--read-only"] if read_only else [])]
    loop = _run([*losetup, str(image)]).stdout.strip()
    try:
        options = "ro" if read_only else "rw"
        _run([_tool("mount.exfat-fuse"), "-o", options, loop, str(at)])
    finally:
        _run([_tool("losetup"), "--detach", loop])
    # It daemonized: its process is the one whose argv names this loop device and mount point.
    pidfd = os.pidfd_open(_exfat_daemon_of(loop, at))
    card = CardMount(path=at, image=image, _pidfd=pidfd)
    try:
        yield card
    finally:
        card._unmount()


def _exfat_daemon_of(device: str, at: Path) -> int:
    """The exfat-fuse process serving ``device`` at ``at``. Not merely a process with the
    device open: a parallel test's losetup or blkid probes loop devices too, and pulling the
    card must kill this mount's daemon, never theirs."""
    wanted = {device, str(at)}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if Path(argv[0]).name == "mount.exfat-fuse" and wanted <= set(argv):
                return int(entry.name)
    raise RuntimeError(f"no mount.exfat-fuse process serves {device} at {at}")


def _fusermount(at: Path, *, lazy: bool) -> bool:
    # fuse3 (which Debian lets stand in for fuse) names it fusermount3.
    try:
        fusermount = _tool("fusermount")
    except CardToolMissing:
        fusermount = _tool("fusermount3")
    command = [fusermount, "-u", *(["-z"] if lazy else []), str(at)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    return result.returncode == 0


def _wait_for_mount(
    at: Path, *, present: bool, timeout: float, child: subprocess.Popen[bytes] | None = None
) -> bool:
    """Wait until a mount at ``at`` appears (or goes): woken by each mount-table change, and
    at least every 50 ms to notice the FUSE helper dying before it mounted."""
    deadline = time.monotonic() + timeout
    with MountTableChanges() as changes:
        while (mount_at(at) is not None) != present:
            if child is not None and child.poll() is not None:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            changes.wait(min(left, 0.05))
    return True


def _wait_for_exit(pidfd: int, timeout: float) -> bool:
    """True once the process behind ``pidfd`` has exited (a pidfd turns readable then)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(timeout * 1000.0))
