"""camtrap device agent: capture -> vision -> store -> uplink, with OTA model updates."""

from device.contracts.release import VERSION as __version__

__all__ = ["__version__"]
