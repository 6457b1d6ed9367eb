"""Camtrap DP 1.0.2 export of what the traps delivered (``camtrap-cloud export camtrap-dp``)."""

from cloud_stub.export.camtrap_dp import export_camtrap_dp, run_export
from cloud_stub.export.metadata import ProjectInfo
from cloud_stub.export.package import ExportError
from cloud_stub.export.source import Selection

__all__ = ["ExportError", "ProjectInfo", "Selection", "export_camtrap_dp", "run_export"]
