"""The radio switch: Wi-Fi or the modem off while the trap has nothing to send and no sync
window is due (``uplink.radio_control``, ``uplink.radio``; docs/uplink.md).

Backends:

- ``nmcli``: NetworkManager's ``nmcli radio <wifi|wwan|all> on|off``, as on Raspberry Pi OS
  Bookworm. A command that fails is one log line naming it and the radio is believed to be
  where it was; the uplink carries on (a radio left on costs energy, never captures);
- ``dry-run``: the same commands recorded (``commands``) and logged, never run; the state is
  kept as if they had run, so the energy counters and ``camtrap status`` read the same;
- ``none``: the radio is not ours to switch; always on.

Each switch tells the energy counters (``EnergyCounters.radio``) when the radio goes on or
off, so radio-on seconds come from the switch itself, not from guesses elsewhere.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from device.config import UplinkSection
    from device.power.counters import EnergyCounters

log = logging.getLogger("camtrap.power")

NMCLI = "nmcli"
# nmcli asks NetworkManager over D-Bus; switching a radio takes well under a second, so this
# bound only matters when NetworkManager hangs.
COMMAND_TIMEOUT_S = 15.0


class RadioSwitch(Protocol):
    def on(self) -> None: ...

    def off(self) -> None: ...

    @property
    def is_on(self) -> bool: ...

    def describe(self) -> str:
        """One line for logs and ``camtrap status``: what switches the radio, and its state."""
        ...


class RadioCommandFailed(Exception):
    """A radio command ran and failed; the message says why, in nmcli's words."""


# Runs one argv; raises OSError, subprocess.SubprocessError or RadioCommandFailed.
Runner = Callable[[list[str]], None]


def nmcli_argv(radio: str, on: bool) -> list[str]:
    return [NMCLI, "radio", radio, "on" if on else "off"]


def run_command(argv: list[str]) -> None:
    """Run ``argv`` (found on PATH) and raise with its first error line when it fails."""
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise RadioCommandFailed(said[0] if said else f"exit status {done.returncode}")


def _failure(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{NMCLI} not found (is NetworkManager installed?)"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"no answer within {exc.timeout:g} s"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


class _Switch:
    """State, the counters, and the lock shared by the switches that act: ``_apply`` does the
    work and returns whether the radio is now where it was asked to be."""

    kind = ""

    def __init__(self, radio: str, counters: EnergyCounters | None, on: bool = True) -> None:
        self.radio = radio
        self.counters = counters
        self._on = on
        self._lock = threading.Lock()
        if counters is not None:
            counters.radio(on)

    def on(self) -> None:
        self._set(True)

    def off(self) -> None:
        self._set(False)

    @property
    def is_on(self) -> bool:
        return self._on

    def _set(self, on: bool) -> None:
        with self._lock:
            if not self._apply(on):
                return
            self._on = on
            if self.counters is not None:
                self.counters.radio(on)

    def _apply(self, on: bool) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.kind} {NMCLI} radio {self.radio} ({'on' if self._on else 'off'})".strip()


class NmcliRadio(_Switch):
    """``nmcli radio <radio> on|off``. ``run`` is the command runner (tests may pass one; the
    default runs the real ``nmcli`` found on PATH)."""

    def __init__(
        self,
        radio: str,
        counters: EnergyCounters | None = None,
        *,
        run: Runner = run_command,
        on: bool = True,
    ) -> None:
        super().__init__(radio, counters, on)
        self._run = run
        self.last_error: str | None = None

    def _apply(self, on: bool) -> bool:
        argv = nmcli_argv(self.radio, on)
        try:
            self._run(argv)
        except (OSError, subprocess.SubprocessError, RadioCommandFailed) as exc:
            self.last_error = f"`{shlex.join(argv)}` failed: {_failure(exc)}"
            # One line, and the radio is believed to be where it was: the uplink goes on.
            log.warning("radio: %s", self.last_error)
            return False
        self.last_error = None
        log.info("radio %s: ran `%s`", "on" if on else "off", shlex.join(argv))
        return True


class DryRunRadio(_Switch):
    """Records the exact argv ``NmcliRadio`` would run (``commands``), and logs it."""

    kind = "dry-run"

    def __init__(self, radio: str, counters: EnergyCounters | None = None, on: bool = True):
        super().__init__(radio, counters, on)
        self.commands: list[list[str]] = []

    def _apply(self, on: bool) -> bool:
        argv = nmcli_argv(self.radio, on)
        self.commands.append(argv)
        log.info("radio %s (dry-run): would run `%s`", "on" if on else "off", shlex.join(argv))
        return True


class NoRadio:
    """``radio_control = "none"``: the radio is always on and nothing switches it."""

    def __init__(self, counters: EnergyCounters | None = None) -> None:
        if counters is not None:
            counters.radio(True)

    def on(self) -> None:
        pass

    def off(self) -> None:
        pass

    @property
    def is_on(self) -> bool:
        return True

    def describe(self) -> str:
        return "not switched (uplink.radio_control = none): always on"


def open_radio(uplink: UplinkSection, counters: EnergyCounters | None = None) -> RadioSwitch:
    if uplink.radio_control == "nmcli":
        return NmcliRadio(uplink.radio, counters)
    if uplink.radio_control == "dry-run":
        return DryRunRadio(uplink.radio, counters)
    return NoRadio(counters)
