"""The camtrap release every program of this repository belongs to (agent, provisioning, cloud
stub): what ``--version`` prints, what telemetry reports and what an export names as its
source. pyproject.toml reads the package version from here."""

__all__ = ["VERSION"]

VERSION = "0.1.0"
