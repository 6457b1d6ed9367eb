"""A fake I2C bus with INA219/INA260 chips on it, driven by the test.

It answers the smbus2 ``SMBus`` calls the gauges make, the way the chips do: 16-bit registers
sent most significant byte first, read-only measurement registers, and an absent address
answering with EREMOTEIO (what i2c-dev gives for a NACK). The test sets what the chip
measures (``set_bus_voltage``, ``set_current``); the chip turns it into raw register values
with the datasheet's LSBs, so the gauge's decoding is what is under test.
"""

from __future__ import annotations

import errno
import os


def _word(value: int) -> int:
    """A signed or unsigned figure as the 16-bit two's-complement register holds it."""
    if not -0x8000 <= value <= 0xFFFF:
        raise ValueError(f"{value} does not fit a 16-bit register")
    return value & 0xFFFF


class FakeChip:
    """Registers in a dict; ``writable`` names the ones a write changes."""

    name = "chip"
    writable: frozenset[int] = frozenset()

    def __init__(self, registers: dict[int, int]) -> None:
        self.registers = dict(registers)
        self.writes: list[tuple[int, int]] = []
        self.broken: int | None = None  # an errno: every read fails with it

    def read(self, register: int) -> int:
        if self.broken is not None:
            raise OSError(self.broken, os.strerror(self.broken))
        if register not in self.registers:
            raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))
        return self.registers[register]

    def write(self, register: int, value: int) -> None:
        self.writes.append((register, value))
        if register in self.writable:
            self.registers[register] = value


class FakeIna219(FakeChip):
    name = "ina219"
    writable = frozenset({0x00, 0x05})
    CONVERSION_READY = 0x0002  # bit 1 of the bus voltage register

    def __init__(self, shunt_ohms: float = 0.1) -> None:
        # Power-on defaults: configuration 0x399F, everything else 0.
        super().__init__({0x00: 0x399F, 0x01: 0, 0x02: 0, 0x03: 0, 0x04: 0, 0x05: 0})
        self.shunt_ohms = shunt_ohms

    def set_bus_voltage(self, volts: float) -> None:
        """Bits 15..3 in 4 mV steps, conversion ready set."""
        self.registers[0x02] = (round(volts / 0.004) << 3) | self.CONVERSION_READY

    def set_current(self, amps: float) -> None:
        """What the shunt's voltage drop reads as: signed, 10 uV per bit."""
        self.registers[0x01] = _word(round(amps * self.shunt_ohms / 10e-6))


class FakeIna260(FakeChip):
    name = "ina260"
    writable = frozenset({0x00, 0x06, 0x07})

    def __init__(self, manufacturer_id: int = 0x5449) -> None:
        super().__init__(
            {0x00: 0x6127, 0x01: 0, 0x02: 0, 0x03: 0, 0xFE: manufacturer_id, 0xFF: 0x2270}
        )
        self._volts = 0.0
        self._amps = 0.0

    def set_bus_voltage(self, volts: float) -> None:
        self._volts = volts
        self.registers[0x02] = _word(round(volts / 0.00125))
        self._update_power()

    def set_current(self, amps: float) -> None:
        self._amps = amps
        self.registers[0x01] = _word(round(amps / 0.00125))
        self._update_power()

    def _update_power(self) -> None:
        # The chip multiplies its own current and voltage: unsigned, 10 mW per bit.
        self.registers[0x03] = _word(round(abs(self._volts * self._amps) / 0.010))


class FakeI2cBus:
    """One bus: chips by address. Pass ``bus`` (or ``factory``) where smbus2's SMBus goes."""

    def __init__(self, number: int = 1) -> None:
        self.number = number
        self.chips: dict[int, FakeChip] = {}
        self.closed = False
        self.opened: list[int] = []

    def attach(self, address: int, chip: FakeChip) -> FakeChip:
        self.chips[address] = chip
        return chip

    def factory(self, bus_number: int) -> FakeI2cBus:
        self.opened.append(bus_number)
        if bus_number != self.number:
            raise FileNotFoundError(errno.ENOENT, f"No such file: '/dev/i2c-{bus_number}'")
        self.closed = False
        return self

    def _chip(self, address: int) -> FakeChip:
        if self.closed:
            raise OSError(errno.EBADF, "bus closed")
        chip = self.chips.get(address)
        if chip is None:
            raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))
        return chip

    # -- what smbus2.SMBus offers ----------------------------------------------------------

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        if length != 2:
            raise ValueError("INA chips are read one 16-bit register at a time")
        value = self._chip(i2c_addr).read(register)
        return [value >> 8, value & 0xFF]

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int]) -> None:
        if len(data) != 2:
            raise ValueError("INA chips are written one 16-bit register at a time")
        self._chip(i2c_addr).write(register, (data[0] << 8) | data[1])

    def read_word_data(self, i2c_addr: int, register: int) -> int:
        """SMBus word order (low byte first): a big-endian register comes back swapped."""
        value = self._chip(i2c_addr).read(register)
        return ((value & 0xFF) << 8) | (value >> 8)

    def close(self) -> None:
        self.closed = True
