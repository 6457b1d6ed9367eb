"""The infrared illuminator: a GPIO output (an LED driver's enable line), on gpiozero.

Modes: ``on``, ``off``, ``schedule`` (on from ``schedule_on`` to ``schedule_off`` local time,
possibly across midnight) and ``auto`` (on when the last analysis frame was dark). In auto mode
the light itself brightens what the camera sees, so a single threshold would make it flap:
it switches on below ``dark_threshold``, off only above ``dark_threshold + off_margin``, and it
holds each state for at least ``min_dwell_s``.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpiozero import DigitalOutputDevice
    from gpiozero.pins import Factory

    from device.config import IrSection


def parse_hhmm(value: str, key: str) -> time:
    try:
        hours, minutes = (int(part) for part in value.split(":"))
        return time(hours, minutes)
    except ValueError as exc:
        raise ValueError(f"ir.{key}: {value!r} is not a time of day (HH:MM)") from exc


def in_schedule(now: time, on: time, off: time) -> bool:
    """True inside [on, off); a window whose end is before its start spans midnight."""
    if on == off:
        return False  # an empty window, not a 24-hour one: "on" mode exists for that
    if on < off:
        return on <= now < off
    return now >= on or now < off


class IrLight:
    """Decides, frame by frame, whether the IR light is on for the next frame, and drives it.

    With ``section.pin`` None there is no light: every call is a no-op and it is never on.
    The output is opened on ``pin_factory`` (the trap's one factory, see ``gpio``); None means
    gpiozero's global default, as it does to gpiozero.
    """

    def __init__(
        self,
        section: IrSection,
        *,
        pin_factory: Factory | None = None,
        off_margin: float = 15.0,
        min_dwell_s: float = 60.0,
    ) -> None:
        self.section = section
        self.off_margin = off_margin
        self.min_dwell_s = min_dwell_s
        self._device: DigitalOutputDevice | None = None
        self._on = False
        self._changed_at: datetime | None = None
        # Fail at start-up, not at dusk, when the schedule is unparseable.
        parse_hhmm(section.schedule_on, "schedule_on")
        parse_hhmm(section.schedule_off, "schedule_off")
        if section.pin is not None:
            from gpiozero import DigitalOutputDevice

            from device.hardware.gpio import open_pin_device

            self._device = open_pin_device(
                DigitalOutputDevice,
                section.pin,
                "ir.pin, the IR light",
                initial_value=False,
                pin_factory=pin_factory,
            )

    @property
    def is_on(self) -> bool:
        return self._on

    def update(self, lores_mean: float | None, now: datetime) -> bool:
        """Set the light for the next frame; ``now`` is local wall-clock time. Returns is_on."""
        if self._device is None:
            return False
        want = self._decide(lores_mean, now)
        if want != self._on:
            if want:
                self._device.on()
            else:
                self._device.off()
            self._on = want
            self._changed_at = now
        return self._on

    def _decide(self, lores_mean: float | None, now: datetime) -> bool:
        mode = self.section.mode
        if mode == "on":
            return True
        if mode == "off":
            return False
        if mode == "schedule":
            on = parse_hhmm(self.section.schedule_on, "schedule_on")
            off = parse_hhmm(self.section.schedule_off, "schedule_off")
            return in_schedule(now.time(), on, off)
        return self._decide_auto(lores_mean, now)

    def _decide_auto(self, lores_mean: float | None, now: datetime) -> bool:
        if lores_mean is None:
            return self._on  # no evidence (a failed frame): keep what we have
        if self._changed_at is not None:
            held = (now - self._changed_at).total_seconds()
            # A negative hold means the clock was stepped back; do not freeze the light.
            if 0 <= held < self.min_dwell_s:
                return self._on
        threshold = self.section.dark_threshold
        if self._on:
            return lores_mean <= threshold + self.off_margin
        return lores_mean < threshold

    def close(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            device.off()
            device.close()
        self._on = False
