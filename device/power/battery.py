"""Battery gauges: how much charge the trap has left, from whatever the hardware offers.

- ``ina219`` / ``ina260``: TI's current/power monitors on I2C (smbus2), between the pack and
  the Pi. They measure volts and amps, not charge, so the percent is the pack voltage placed
  linearly between ``battery.empty_v`` and ``battery.full_v`` (docs/power-battery.md says what
  that costs in accuracy).
- ``sysfs``: a kernel ``power_supply`` node (UPS HATs with a fuel-gauge driver, laptops),
  which reports the percent itself (``capacity``).
- ``none``: no gauge; every reading is unknown, and unknown never sheds anything.

Opening a gauge checks that it is there (``GaugeUnavailable``, one line naming the bus, the
address or the path); a later read that fails raises ``GaugeReadError``, which the battery
monitor logs and survives: a trap never sheds or shuts down on a reading it does not have.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from device.hardware import HardwareUnavailable
from device.power.report import BatteryReading

if TYPE_CHECKING:
    from device.config import BatterySection

DEV_I2C = Path("/dev")

# INA219 (TI SBOS448). Read without touching its configuration or calibration: the shunt and
# bus voltage registers are valid at power-on defaults (the datasheet's "simple current shunt
# monitor usage"), so camtrap never reprograms a chip a HAT's own software may have set up.
INA219_CONFIG = 0x00
INA219_SHUNT_VOLTAGE = 0x01  # signed, 10 uV per bit
INA219_BUS_VOLTAGE = 0x02  # bits 15..3, 4 mV per bit; bit 0 is the math-overflow flag
INA219_SHUNT_LSB_V = 10e-6
INA219_BUS_LSB_V = 0.004

# INA260 (TI SBOS656): its shunt is inside, so its registers are already in amps and volts.
INA260_CURRENT = 0x01  # signed, 1.25 mA per bit
INA260_BUS_VOLTAGE = 0x02  # 1.25 mV per bit
INA260_POWER = 0x03  # 10 mW per bit
INA260_MANUFACTURER_ID = 0xFE
TI_MANUFACTURER_ID = 0x5449  # "TI"
INA260_CURRENT_LSB_A = 0.00125
INA260_BUS_LSB_V = 0.00125
INA260_POWER_LSB_W = 0.010


class GaugeUnavailable(HardwareUnavailable):
    """The configured gauge is not there; the message names the bus/address or the path."""


class GaugeReadError(Exception):
    """One read failed. ``kind`` groups failures for the log ("i2c", "garbage", "missing",
    "io"), so the monitor logs each kind once instead of every poll."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class BatteryGauge(Protocol):
    def read(self) -> BatteryReading:
        """One reading; raises GaugeReadError when the gauge cannot be read now."""
        ...

    def describe(self) -> str:
        """The gauge in a few words, as logs and the status show it."""
        ...


class I2cBus(Protocol):
    """What the INA gauges use of smbus2's ``SMBus`` (the tests' fake chip has the same)."""

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]: ...

    def close(self) -> None: ...


BusFactory = Callable[[int], I2cBus]


def percent_from_voltage(volts: float, empty_v: float, full_v: float) -> float:
    """Linear between empty and full, clamped to 0..100. A Li-ion discharge curve is flat in
    the middle, so mid-range figures are rough; the ends, where shedding acts, are better."""
    share = (volts - empty_v) / (full_v - empty_v)
    return round(100.0 * min(1.0, max(0.0, share)), 1)


def _signed(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


class NoGauge:
    """``battery.gauge = "none"``: mains power, or no way to know."""

    def read(self) -> BatteryReading:
        return BatteryReading(None, source="none")

    def describe(self) -> str:
        return "no battery gauge"


class _InaGauge:
    chip = "ina"

    def __init__(self, bus: I2cBus, bus_number: int, address: int, section: BatterySection):
        self.bus = bus
        self.bus_number = bus_number
        self.address = address
        self.empty_v = section.empty_v
        self.full_v = section.full_v

    def describe(self) -> str:
        return f"{self.chip} bus {self.bus_number} addr 0x{self.address:02x}"

    def _word(self, register: int) -> int:
        """One 16-bit register. INA registers are sent most significant byte first, while an
        SMBus word read assumes the low byte first, hence a 2-byte block read instead."""
        try:
            data = self.bus.read_i2c_block_data(self.address, register, 2)
        except OSError as exc:
            raise GaugeReadError(
                "i2c", f"{self.describe()}: read of register 0x{register:02x} failed ({exc})"
            ) from exc
        if len(data) != 2:
            raise GaugeReadError(
                "i2c", f"{self.describe()}: register 0x{register:02x} gave {len(data)} bytes"
            )
        return (data[0] << 8) | data[1]

    def close(self) -> None:
        self.bus.close()


class Ina219Gauge(_InaGauge):
    chip = "ina219"

    def __init__(self, bus: I2cBus, bus_number: int, address: int, section: BatterySection):
        super().__init__(bus, bus_number, address, section)
        self.shunt_ohms = section.shunt_ohms

    def probe(self) -> None:
        """The INA219 has no ID register: a device that answers a read is taken for it."""
        self._word(INA219_CONFIG)

    def read(self) -> BatteryReading:
        bus = self._word(INA219_BUS_VOLTAGE)
        shunt = _signed(self._word(INA219_SHUNT_VOLTAGE))
        volts = (bus >> 3) * INA219_BUS_LSB_V
        amps = shunt * INA219_SHUNT_LSB_V / self.shunt_ohms
        return BatteryReading(
            percent=percent_from_voltage(volts, self.empty_v, self.full_v),
            voltage_v=round(volts, 3),
            current_a=round(amps, 4),
            power_w=round(volts * amps, 3),
            source=self.describe(),
        )


class Ina260Gauge(_InaGauge):
    chip = "ina260"

    def probe(self) -> None:
        maker = self._word(INA260_MANUFACTURER_ID)
        if maker != TI_MANUFACTURER_ID:
            raise GaugeUnavailable(
                f"{self.describe()}: the device there is not an INA260"
                f" (manufacturer id 0x{maker:04x}, expected 0x{TI_MANUFACTURER_ID:04x})"
            )

    def read(self) -> BatteryReading:
        amps = _signed(self._word(INA260_CURRENT)) * INA260_CURRENT_LSB_A
        volts = self._word(INA260_BUS_VOLTAGE) * INA260_BUS_LSB_V
        watts = self._word(INA260_POWER) * INA260_POWER_LSB_W
        return BatteryReading(
            percent=percent_from_voltage(volts, self.empty_v, self.full_v),
            voltage_v=round(volts, 4),
            current_a=round(amps, 5),
            power_w=round(watts, 2),
            source=self.describe(),
        )


# power_supply "status" values (Documentation/ABI/testing/sysfs-class-power).
_CHARGING = {"Charging": True, "Discharging": False, "Not charging": False, "Full": False}


class SysfsGauge:
    """A ``/sys/class/power_supply/<name>`` node: ``capacity`` (percent) is required; the
    voltage (``voltage_now``, uV), current (``current_now``, uA) and ``status`` are shown when
    the driver gives them and are None otherwise (also when they hold garbage)."""

    def __init__(self, node: Path) -> None:
        self.node = node

    def describe(self) -> str:
        return f"sysfs {self.node.name}"

    def _text(self, name: str) -> str | None:
        try:
            return (self.node / name).read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            # Some fuel-gauge drivers answer EIO or ENODATA while the pack is unplugged.
            raise GaugeReadError("io", f"{self.node / name}: cannot read ({exc})") from exc

    def _micro(self, name: str) -> float | None:
        text = self._text(name)
        try:
            return None if text is None else int(text) / 1e6
        except ValueError:
            return None

    def read(self) -> BatteryReading:
        capacity = self.node / "capacity"
        text = self._text("capacity")
        if text is None:
            raise GaugeReadError("missing", f"{capacity}: gone (was the supply unplugged?)")
        try:
            percent = float(int(text))
        except ValueError as exc:
            raise GaugeReadError("garbage", f"{capacity}: {text[:40]!r} is not a percent") from exc
        if not 0 <= percent <= 100:
            raise GaugeReadError("garbage", f"{capacity}: {text!r} is outside 0..100")
        volts = self._micro("voltage_now")
        amps = self._micro("current_now")
        status = self._text("status")
        return BatteryReading(
            percent=percent,
            voltage_v=volts,
            current_a=amps,
            power_w=None if volts is None or amps is None else round(abs(volts * amps), 3),
            charging=None if status is None else _CHARGING.get(status),
            source=self.describe(),
        )


def find_supply(root: Path, name: str) -> Path:
    """The named node, or (name "") the first node, by name, with a ``capacity`` file."""
    if name:
        node = root / name
        if not (node / "capacity").is_file():
            raise GaugeUnavailable(
                f"sysfs gauge: {node / 'capacity'} does not exist (battery.supply {name!r})"
            )
        return node
    try:
        nodes: Sequence[Path] = sorted(root.iterdir())
    except OSError as exc:
        raise GaugeUnavailable(f"sysfs gauge: cannot list {root} ({exc})") from exc
    for node in nodes:
        if (node / "capacity").is_file():
            return node
    raise GaugeUnavailable(f"sysfs gauge: no power_supply under {root} has a capacity file")


def _smbus(bus_number: int) -> I2cBus:
    device = DEV_I2C / f"i2c-{bus_number}"
    if not device.exists():
        raise GaugeUnavailable(
            f"battery gauge: {device} does not exist (enable I2C: raspi-config, or"
            " dtparam=i2c_arm=on in config.txt)"
        )
    try:
        from smbus2 import SMBus  # a Pi-side library: only gauges on I2C need it
    except ImportError as exc:
        raise GaugeUnavailable(
            "battery gauge: smbus2 is not installed (apt install python3-smbus2)"
        ) from exc
    try:
        bus: I2cBus = SMBus(bus_number)
    except OSError as exc:
        raise GaugeUnavailable(f"battery gauge: cannot open {device} ({exc})") from exc
    return bus


def open_gauge(section: BatterySection, *, bus_factory: BusFactory | None = None) -> BatteryGauge:
    """The gauge ``[battery]`` names, checked to be there. ``bus_factory(bus_number)`` gives
    the I2C bus (default: smbus2 on /dev/i2c-N); tests pass their fake chip's bus."""
    if section.gauge == "none":
        return NoGauge()
    if section.gauge == "sysfs":
        return SysfsGauge(find_supply(section.sysfs_root, section.supply))
    factory = bus_factory or _smbus
    try:
        bus = factory(section.i2c_bus)
    except OSError as exc:
        raise GaugeUnavailable(
            f"battery gauge: cannot open I2C bus {section.i2c_bus} ({exc})"
        ) from exc
    gauge_type = Ina219Gauge if section.gauge == "ina219" else Ina260Gauge
    gauge = gauge_type(bus, section.i2c_bus, section.i2c_address, section)
    try:
        gauge.probe()
    except GaugeReadError as exc:
        bus.close()
        cause = exc.__cause__
        absent = isinstance(cause, OSError) and cause.errno in (errno.EREMOTEIO, errno.ENXIO)
        what = "no device answers" if absent else "the device does not answer reads"
        raise GaugeUnavailable(
            f"{section.gauge} gauge: {what} at address 0x{section.i2c_address:02x} on"
            f" /dev/i2c-{section.i2c_bus} (battery.i2c_address; i2cdetect -y"
            f" {section.i2c_bus} lists the devices there)"
        ) from exc
    except GaugeUnavailable:
        bus.close()
        raise
    return gauge
