"""camtrap device agent: capture -> vision -> store -> uplink, with OTA model updates."""

__version__ = "0.1.0"
