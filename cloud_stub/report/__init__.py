"""Reports for people: plots and a text summary of what the fleet delivered."""

from cloud_stub.report.report import write_report

__all__ = ["write_report"]
