"""The script's only doors to the system: file writes and commands.

Everything that changes the machine passes through ``Effects``: with ``dry_run`` it prints what
it would do instead. Commands go through a ``Runner``; tests swap in ``RecordingRunner`` at this
process boundary, because NetworkManager and systemd cannot run in a test.
"""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO


class ProvisionError(Exception):
    """A fault the technician must fix; the message says what and how."""


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str = ""
    stderr: str = ""
    # False when the command was only printed (--dry-run, --print-commands): callers then say
    # what "would" happen, never that it did.
    ran: bool = True

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Runner(Protocol):
    def run(self, argv: Sequence[str], timeout: float = 120.0) -> Result: ...


class SubprocessRunner:
    def run(self, argv: Sequence[str], timeout: float = 120.0) -> Result:
        try:
            done = subprocess.run(
                list(argv), capture_output=True, text=True, timeout=timeout, check=False
            )
        except FileNotFoundError:
            return Result(127, "", f"{argv[0]}: command not found")
        except subprocess.TimeoutExpired:
            return Result(124, "", f"{argv[0]}: no answer within {timeout:.0f} s")
        return Result(done.returncode, done.stdout, done.stderr)


@dataclass
class RecordingRunner:
    """Records argv instead of running it; ``replies`` maps an argv prefix to a Result."""

    replies: dict[tuple[str, ...], Result] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)

    def run(self, argv: Sequence[str], timeout: float = 120.0) -> Result:
        self.calls.append(list(argv))
        for prefix in sorted(self.replies, key=len, reverse=True):
            if tuple(argv[: len(prefix)]) == prefix:
                return self.replies[prefix]
        return Result(0)


def shown(argv: Sequence[str], secrets: Sequence[str] = ()) -> str:
    """A command line as a shell would take it, with secret arguments masked."""
    return " ".join("'********'" if a in secrets else shlex.quote(a) for a in argv)


def service_owner(user: str | None) -> tuple[int, int] | None:
    if not user:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


class Effects:
    def __init__(
        self,
        runner: Runner,
        *,
        dry_run: bool = False,
        out: TextIO | None = None,
        service_user: str | None = "camtrap",
        hook: Callable[[str], None] | None = None,
        print_commands: bool = False,
    ) -> None:
        self.runner = runner
        self.print_commands = print_commands
        self.dry_run = dry_run
        self.out = out or sys.stdout
        self.service_user = service_user
        self.hook = hook or (lambda _name: None)

    @property
    def commands_run(self) -> bool:
        """Whether commands that change the system really run (not --dry-run/--print-commands)."""
        return not (self.dry_run or self.print_commands)

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def run(
        self,
        argv: Sequence[str],
        *,
        secrets: Sequence[str] = (),
        reads: bool = False,
        timeout: float = 120.0,
    ) -> Result:
        """Run a command; ``reads`` marks one that only looks, and so runs in a dry run too."""
        if self.dry_run and not reads:
            self.say(f"  would run: {shown(argv, secrets)}")
            return Result(0, ran=False)
        if self.print_commands:
            # A relocated install (the demo): the host's systemd and NetworkManager are not ours.
            if reads:
                return Result(3)  # "no": nothing is active, no profile exists
            self.say(f"  not run (--print-commands): {shown(argv, secrets)}")
            return Result(0, ran=False)
        return self.runner.run(argv, timeout)

    def mkdir(self, path: Path, mode: int = 0o755) -> None:
        if path.is_dir():
            return
        if self.dry_run:
            self.say(f"  would create directory {path} (mode {mode:o})")
            return
        path.mkdir(parents=True, mode=mode, exist_ok=True)

    def write(
        self,
        path: Path,
        data: bytes,
        *,
        mode: int = 0o644,
        private: bool = False,
        preview: str | None = None,
        step: str | None = None,
    ) -> None:
        """Atomic replace: ``path.part`` written, fsynced, renamed, directory fsynced.

        ``private`` files are created 0600 from the start (never briefly readable) and given to
        the service user. A failure (a full disk) removes the part file and leaves the old file
        whole. ``preview`` is what a dry run prints in place of secret contents.
        """
        if private:
            mode = 0o600
        if self.dry_run:
            self.say(f"  would write {path} (mode {mode:o}, {len(data)} bytes)")
            if preview is not None:
                for line in preview.rstrip("\n").splitlines():
                    self.say(f"    | {line}")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            try:
                os.fchmod(fd, mode)  # the umask must not widen or narrow what we asked for
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            owner = service_owner(self.service_user) if private else None
            if owner is not None:
                os.chown(part, *owner)
            if step:
                self.hook(step)
            os.replace(part, path)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException as exc:
            part.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise ProvisionError(
                    f"could not write {path}: {exc.strerror or exc}; the previous file is unchanged"
                ) from exc
            raise

    def remove(self, path: Path) -> None:
        if not path.exists():
            return
        if self.dry_run:
            self.say(f"  would remove {path}")
            return
        path.unlink()
