"""Battery gauges read what the hardware says, and say in one line when it is not there.

The INA chips are a fake I2C bus the test drives (tests/support/fake_i2c.py: raw registers,
big-endian, the datasheets' LSBs); sysfs power_supply nodes are trees in tmp_path.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from device.config import BatterySection
from device.hardware import HardwareUnavailable
from device.power.battery import (
    GaugeReadError,
    GaugeUnavailable,
    Ina219Gauge,
    Ina260Gauge,
    NoGauge,
    SysfsGauge,
    open_gauge,
    percent_from_voltage,
)
from tests.support.fake_i2c import FakeI2cBus, FakeIna219, FakeIna260


def section(**keys) -> BatterySection:  # type: ignore[no-untyped-def]
    return BatterySection(**{"empty_v": 3.3, "full_v": 4.2, **keys})


def supply(root: Path, name: str, **files: str) -> Path:
    node = root / name
    node.mkdir(parents=True)
    for file, text in files.items():
        (node / file).write_text(text + "\n")
    return node


# -- INA219 ----------------------------------------------------------------------------------


def test_an_ina219_reads_pack_voltage_and_current_from_its_shunt():
    bus = FakeI2cBus(1)
    chip = bus.attach(0x40, FakeIna219(shunt_ohms=0.1))
    assert isinstance(chip, FakeIna219)
    chip.set_bus_voltage(3.75)
    chip.set_current(0.42)
    gauge = open_gauge(section(gauge="ina219", shunt_ohms=0.1), bus_factory=bus.factory)
    assert isinstance(gauge, Ina219Gauge)
    reading = gauge.read()
    assert reading.voltage_v == pytest.approx(3.75, abs=0.004)
    assert reading.current_a == pytest.approx(0.42, abs=1e-4)
    assert reading.power_w == pytest.approx(3.75 * 0.42, abs=0.01)
    assert reading.percent == pytest.approx(50.0, abs=0.5)  # halfway from 3.3 V to 4.2 V
    assert reading.source == gauge.describe() == "ina219 bus 1 addr 0x40"
    assert chip.writes == [], "camtrap never reprograms the chip"


def test_an_ina219_current_is_signed_and_scaled_by_the_configured_shunt():
    bus = FakeI2cBus(1)
    chip = bus.attach(0x41, FakeIna219(shunt_ohms=0.01))
    assert isinstance(chip, FakeIna219)
    chip.set_bus_voltage(4.2)
    chip.set_current(-1.5)  # charging through a high-side shunt: current flows the other way
    gauge = open_gauge(
        section(gauge="ina219", i2c_address=0x41, shunt_ohms=0.01), bus_factory=bus.factory
    )
    reading = gauge.read()
    assert reading.current_a == pytest.approx(-1.5, abs=1e-3)
    assert reading.percent == 100.0


# -- INA260 ----------------------------------------------------------------------------------


def test_an_ina260_reads_its_own_current_voltage_and_power_registers():
    bus = FakeI2cBus(1)
    chip = bus.attach(0x40, FakeIna260())
    assert isinstance(chip, FakeIna260)
    chip.set_bus_voltage(12.1)
    chip.set_current(0.8)
    gauge = open_gauge(section(gauge="ina260", empty_v=11.0, full_v=12.7), bus_factory=bus.factory)
    assert isinstance(gauge, Ina260Gauge)
    reading = gauge.read()
    assert reading.voltage_v == pytest.approx(12.1, abs=0.00125)
    assert reading.current_a == pytest.approx(0.8, abs=0.00125)
    assert reading.power_w == pytest.approx(12.1 * 0.8, abs=0.01)
    assert reading.percent == pytest.approx(100 * 1.1 / 1.7, abs=0.2)


def test_an_ina260_negative_current_reads_negative():
    bus = FakeI2cBus(1)
    chip = bus.attach(0x40, FakeIna260())
    assert isinstance(chip, FakeIna260)
    chip.set_bus_voltage(3.9)
    chip.set_current(-0.25)
    reading = open_gauge(section(gauge="ina260"), bus_factory=bus.factory).read()
    assert reading.current_a == pytest.approx(-0.25, abs=0.00125)


def test_another_chip_at_the_ina260_address_is_refused_by_its_manufacturer_id():
    bus = FakeI2cBus(1)
    bus.attach(0x40, FakeIna260(manufacturer_id=0x1234))
    with pytest.raises(GaugeUnavailable, match=r"not an INA260.*0x1234"):
        open_gauge(section(gauge="ina260"), bus_factory=bus.factory)
    assert bus.closed


# -- what is not there -----------------------------------------------------------------------


def test_no_device_at_the_address_names_the_address_and_the_bus():
    bus = FakeI2cBus(1)
    bus.attach(0x40, FakeIna219())
    with pytest.raises(GaugeUnavailable) as caught:
        open_gauge(section(gauge="ina219", i2c_address=0x45), bus_factory=bus.factory)
    message = str(caught.value)
    assert "no device answers at address 0x45 on /dev/i2c-1" in message
    assert "\n" not in message
    assert isinstance(caught.value, HardwareUnavailable), "the agent's exit 69 path"
    assert bus.closed


def test_no_i2c_bus_names_the_bus():
    bus = FakeI2cBus(1)
    with pytest.raises(GaugeUnavailable, match="I2C bus 3"):
        open_gauge(section(gauge="ina219", i2c_bus=3), bus_factory=bus.factory)


def test_the_real_bus_factory_names_the_missing_dev_node(monkeypatch, tmp_path):
    import device.power.battery as battery

    monkeypatch.setattr(battery, "DEV_I2C", tmp_path)  # a /dev without i2c-7
    with pytest.raises(GaugeUnavailable, match=f"{tmp_path}/i2c-7 does not exist"):
        open_gauge(section(gauge="ina260", i2c_bus=7))


def test_an_i2c_read_error_after_opening_is_a_read_error_not_a_crash():
    bus = FakeI2cBus(1)
    chip = bus.attach(0x40, FakeIna219())
    gauge = open_gauge(section(gauge="ina219"), bus_factory=bus.factory)
    chip.broken = errno.EIO  # a loose wire
    with pytest.raises(GaugeReadError) as caught:
        gauge.read()
    assert caught.value.kind == "i2c"
    assert "ina219 bus 1 addr 0x40" in str(caught.value)
    chip.broken = None
    assert gauge.read().percent is not None, "it reads again once the wire is back"


def test_a_device_that_answers_reads_with_an_error_is_not_taken_for_a_gauge():
    bus = FakeI2cBus(1)
    chip = bus.attach(0x40, FakeIna219())
    chip.broken = errno.EIO
    with pytest.raises(GaugeUnavailable, match="does not answer reads at address 0x40"):
        open_gauge(section(gauge="ina219"), bus_factory=bus.factory)


# -- sysfs power_supply ------------------------------------------------------------------------


def test_a_sysfs_supply_reports_its_capacity_voltage_current_and_status(tmp_path):
    supply(tmp_path, "AC", type="Mains", online="1")
    supply(
        tmp_path,
        "BAT0",
        type="Battery",
        capacity="63",
        voltage_now="3912000",
        current_now="-420000",
        status="Discharging",
    )
    gauge = open_gauge(section(gauge="sysfs", sysfs_root=tmp_path))
    assert isinstance(gauge, SysfsGauge)
    reading = gauge.read()
    assert reading.percent == 63.0
    assert reading.voltage_v == pytest.approx(3.912)
    assert reading.current_a == pytest.approx(-0.42)
    assert reading.power_w == pytest.approx(3.912 * 0.42, abs=0.001)
    assert reading.charging is False
    assert reading.source == "sysfs BAT0", "the first node with a capacity file"


def test_a_named_supply_is_used_and_optional_files_may_be_missing(tmp_path):
    supply(tmp_path, "BAT0", capacity="10")
    supply(tmp_path, "ups", capacity="88", status="Charging")
    reading = open_gauge(section(gauge="sysfs", sysfs_root=tmp_path, supply="ups")).read()
    assert (reading.percent, reading.charging) == (88.0, True)
    assert reading.voltage_v is None and reading.current_a is None and reading.power_w is None


def test_a_missing_supply_names_the_path(tmp_path):
    supply(tmp_path, "AC", type="Mains", online="1")
    with pytest.raises(GaugeUnavailable, match=f"no power_supply under {tmp_path}"):
        open_gauge(section(gauge="sysfs", sysfs_root=tmp_path))
    with pytest.raises(GaugeUnavailable, match=f"{tmp_path}/ups/capacity does not exist"):
        open_gauge(section(gauge="sysfs", sysfs_root=tmp_path, supply="ups"))
    with pytest.raises(GaugeUnavailable, match="cannot list"):
        open_gauge(section(gauge="sysfs", sysfs_root=tmp_path / "absent"))


@pytest.mark.parametrize("garbage", ["sixty", "", "-1", "255", "12.5"])
def test_garbage_in_capacity_is_a_read_error_naming_the_file(tmp_path, garbage):
    node = supply(tmp_path, "BAT0", capacity="50")
    gauge = open_gauge(section(gauge="sysfs", sysfs_root=tmp_path))
    (node / "capacity").write_text(garbage + "\n")
    with pytest.raises(GaugeReadError) as caught:
        gauge.read()
    assert caught.value.kind == "garbage"
    assert str(node / "capacity") in str(caught.value)


def test_garbage_in_an_optional_file_only_blanks_that_figure(tmp_path):
    supply(tmp_path, "BAT0", capacity="50", voltage_now="n/a", status="Weird")
    reading = open_gauge(section(gauge="sysfs", sysfs_root=tmp_path)).read()
    assert (reading.percent, reading.voltage_v, reading.charging) == (50.0, None, None)


def test_a_supply_that_vanishes_after_opening_is_a_read_error(tmp_path):
    node = supply(tmp_path, "BAT0", capacity="50")
    gauge = open_gauge(section(gauge="sysfs", sysfs_root=tmp_path))
    (node / "capacity").unlink()
    with pytest.raises(GaugeReadError) as caught:
        gauge.read()
    assert caught.value.kind == "missing"


def test_an_unreadable_capacity_is_an_io_read_error(tmp_path):
    node = supply(tmp_path, "BAT0")
    (node / "capacity").mkdir()  # reading a directory fails like a driver's EIO would
    gauge = SysfsGauge(node)
    with pytest.raises(GaugeReadError) as caught:
        gauge.read()
    assert caught.value.kind == "io"


# -- none ------------------------------------------------------------------------------------


def test_no_gauge_reads_unknown():
    gauge = open_gauge(section(gauge="none"))
    assert isinstance(gauge, NoGauge)
    assert gauge.read().percent is None


def test_percent_is_linear_between_empty_and_full_and_clamped():
    assert percent_from_voltage(3.3, 3.3, 4.2) == 0.0
    assert percent_from_voltage(4.2, 3.3, 4.2) == 100.0
    assert percent_from_voltage(3.0, 3.3, 4.2) == 0.0
    assert percent_from_voltage(4.4, 3.3, 4.2) == 100.0
    assert percent_from_voltage(3.48, 3.3, 4.2) == pytest.approx(20.0)
