"""Export the ingest store as a Camtrap DP 1.0.2 package: the function the CLI and demo call."""

from __future__ import annotations

from pathlib import Path

from cloud_stub.export.metadata import ProjectInfo, package_properties
from cloud_stub.export.package import ExportError, PackageContent, Written, write_package
from cloud_stub.export.source import Selection, extract


def build_content(ingest_root: Path, selection: Selection, project: ProjectInfo) -> PackageContent:
    rows = extract(ingest_root, selection)
    if not rows.deployments:
        scope = (
            "match the filters"
            if (selection.deployments or selection.since or selection.until)
            else "exist"
        )
        raise ExportError(
            f"nothing to export: no deployments {scope} in {Path(ingest_root).absolute()} "
            "(Camtrap DP needs at least one deployment with coordinates for spatial coverage)"
        )
    properties = package_properties(
        project,
        rows.deployments,
        rows.media,
        rows.observations,
        rows.observation_rows,
        rows.notes,
    )
    return PackageContent(
        properties=properties,
        deployments=rows.deployments,
        media=rows.media,
        observations=rows.observations,
        files=rows.files,
        notes=rows.notes,
    )


def run_export(
    ingest_root: Path,
    out_dir: Path,
    *,
    selection: Selection | None = None,
    project: ProjectInfo | None = None,
    overwrite: bool = False,
    validate: bool = True,
) -> Written:
    content = build_content(ingest_root, selection or Selection(), project or ProjectInfo())
    return write_package(content, out_dir, overwrite=overwrite, validate=validate)


def export_camtrap_dp(
    ingest_root: Path,
    out_dir: Path,
    *,
    selection: Selection | None = None,
    project: ProjectInfo | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a validated package; returns the absolute path of its ``datapackage.json``.

    Raises ``ExportError`` with a message meant for people when no valid package can be made.
    """
    return run_export(
        ingest_root, out_dir, selection=selection, project=project, overwrite=overwrite
    ).descriptor
