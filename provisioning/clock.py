"""The clock: is it synchronised? If not, let the technician set it and say so.

A manually set clock is better than 1970, but it is not NTP: the agent reports the clock source
``manual`` (never "synced") while the marker file written here exists.
"""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

from device.clock import ClockProbe
from device.config import ClockSection
from provisioning.system import Effects, ProvisionError

# Nothing this software records can be older than its own release.
EARLIEST = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def parse_time(text: str, zone: str) -> dt.datetime:
    """ISO 8601 (an offset wins), or 'YYYY-MM-DD HH:MM[:SS]' read in the device's time zone."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a date and time like 2025-06-01 14:30") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    if value < EARLIEST:
        raise ValueError(f"{value.isoformat()} is before {EARLIEST.year}: check the year")
    return value


def state(section: ClockSection) -> tuple[str, bool]:
    probe = ClockProbe(section).probe()
    return probe.source, probe.synced


def set_manually(
    effects: Effects, section: ClockSection, when: dt.datetime, typed_by: str
) -> list[str]:
    """Step the system clock, save it to an RTC if present, and leave the manual marker."""
    utc = when.astimezone(dt.UTC).replace(microsecond=0)
    stamp = utc.strftime("%Y-%m-%d %H:%M:%S")
    result = effects.run(["date", "--utc", "--set", stamp])
    if not result.ok:
        raise ProvisionError(f"could not set the clock: {result.stderr.strip()}")
    done = [f"clock set to {stamp} UTC"]
    if section.rtc_device.exists():
        rtc = effects.run(["hwclock", "--systohc", "--utc"])
        done.append("saved to the RTC" if rtc.ok else f"RTC not updated: {rtc.stderr.strip()}")
    marker = {
        "set_to": utc.isoformat(),
        "source": typed_by,
        "by": "camtrap-provision",
    }
    effects.mkdir(section.manual_marker.parent, 0o750)
    effects.write(section.manual_marker, (json.dumps(marker) + "\n").encode())
    return done
