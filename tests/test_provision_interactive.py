"""The interactive mode on a real pseudo-terminal: prompts, ``?`` help, re-asking on bad input.

nmcli and systemctl are replaced at the process boundary by scripts on PATH that record their
argv: NetworkManager and systemd cannot run in a test.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from device.config import load_settings

# The world and pins fixtures (temp root, mosquitto, registry, mock GPIO).
pytest_plugins = ["tests.support.broker", "tests.support.provisioning"]
pytestmark = pytest.mark.timeout(120)

RECORDER = '#!/bin/sh\necho "$(basename "$0") $*" >> "$ARGV_LOG"\nexit 0\n'


class Terminal:
    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
        )
        os.close(slave)
        self.seen = ""

    def expect(self, pattern: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.seen):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"never saw {pattern!r}; screen:\n{self.seen[-2000:]}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"ended before {pattern!r}:\n{self.seen[-2000:]}")
                self.seen += chunk.decode(errors="replace")
        match = re.search(pattern, self.seen)
        assert match is not None
        shown, self.seen = self.seen[: match.end()], self.seen[match.end() :]
        return shown

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def finish(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:
                    break
        return self.proc.wait(max(1.0, deadline - time.monotonic()))


def test_a_technician_answers_the_prompts_on_a_terminal(world, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("nmcli", "systemctl", "date", "hwclock"):
        (bin_dir / name).write_text(RECORDER)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "argv.log"
    # Only what a technician would not type: test hardware and the registry's address.
    answers = world.answers(deployment=None, device=None, pir=None, ir=None, wifi=None)
    answers["registration"].pop("method")
    world.write_answers(answers)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "ARGV_LOG": str(log),
        "PYTHONUNBUFFERED": "1",
    }
    term = Terminal(
        [
            sys.executable,
            "-m",
            "provisioning.cli",
            "--root",
            str(world.root),
            "--answers",
            str(world.answers_file),
            "--pir-timeout",
            "0",
        ],
        env,
    )
    term.expect(r"Location name.*: ")
    term.type("Mara North, tree 14")
    term.expect(r"Latitude.*: ")
    term.type("?")
    term.expect(r"south is negative")
    term.expect(r"Latitude.*: ")
    term.type("95")
    term.expect(r"not accepted: must be between -90 and 90")
    term.expect(r"Latitude.*: ")
    term.type("-1.2921")
    term.expect(r"Longitude.*: ")
    term.type("36.8219")
    term.expect(r"Coordinate uncertainty \(m\) \[30\].*: ")
    term.type("")
    term.expect(r"Country \(ISO alpha-3\) \[KEN\].*: ")
    term.type("XYZ")
    term.expect(r"unknown country code 'XYZ'")
    term.expect(r"Country.*: ")
    term.type("")  # accept the offline guess
    term.expect(r"Time zone \[Africa/Nairobi\].*: ")  # proposed from the location
    term.type("")  # the technician confirms it
    for _ in range(7):  # height, tilt, heading, habitat, bait, feature type, set up by
        term.expect(r"\): ")
        term.type("")
    term.expect(r"PIR sensor GPIO \(BCM\) \[17\].*: ")
    term.type("")
    term.expect(r"IR LED GPIO.*: ")
    term.type("17")
    term.expect(r"already the PIR pin")
    term.expect(r"IR LED GPIO.*: ")
    term.type("27")
    for _ in range(3):  # burst, cooldown, timelapse
        term.expect(r"\): ")
        term.type("")
    term.expect(r"Credentials: registry, import \(USB\) or keep \[registry\].*: ")
    term.type("")
    term.expect(r"Wi-Fi network name.*: ")
    term.type("ranger-station")
    term.expect(r"Wi-Fi passphrase.*: ")
    term.type("short")
    term.expect(r"8 to 63 characters")
    term.expect(r"Wi-Fi passphrase.*: ")
    term.type("correct horse battery")
    term.expect(r"Current local time \(Africa/Nairobi\)")
    term.type("2025-06-01 14:30")
    term.expect(r"\[PASS\] broker connection")
    assert term.finish() == 0, term.seen

    settings = load_settings(world.config)
    assert settings.location.country == "KEN" and settings.ir.pin == 27
    assert settings.device.timezone == "Africa/Nairobi"
    calls = log.read_text().splitlines()
    assert any(c.startswith("nmcli connection add type wifi") for c in calls)
    assert "date --utc --set 2025-06-01 11:30:00" in calls
    assert calls[-1] == "systemctl restart camtrap-agent.service"
