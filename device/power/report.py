"""What the power room tells the heartbeat and ``camtrap status``: one snapshot, assembled by
the agent from the parts that know each figure."""

from __future__ import annotations

from dataclasses import dataclass

from device.power.counters import EnergySnapshot

# The low-battery shedding steps, in the order they are taken (docs/power.md). Level N means
# the first N steps are in force; level 0 sheds nothing.
SHED_STEPS = ("blank_media", "classify", "timelapse", "shutdown")


@dataclass(frozen=True)
class BatteryReading:
    """One read of the gauge; any figure the gauge cannot give is None."""

    percent: float | None
    voltage_v: float | None = None
    current_a: float | None = None
    power_w: float | None = None
    charging: bool | None = None
    source: str = ""  # "ina219 bus 1 addr 0x40", "sysfs BAT0"


@dataclass(frozen=True)
class PowerReport:
    profile: str
    board: str
    counters: EnergySnapshot
    battery: BatteryReading | None = None
    shed_level: int = 0
    radio_on: bool = True
    # From the energy model (device.contracts.energy): None without a battery size or counters.
    days_left: float | None = None

    @property
    def shed_steps(self) -> tuple[str, ...]:
        return SHED_STEPS[: self.shed_level]
