"""Which camera took a deployment's media: Camtrap DP's ``cameraID`` and ``cameraModel``.

The registry (provisioning's record) describes a trap's own camera, and its values win. A
deployment fed by ``camtrap import`` also knows its trail camera from each event (EXIF Make,
Model and serial number, the ``--camera`` name). Those fill what the registry left empty, but
only when every event of the deployment names the same camera: several cameras, or the
trap's own captures next to imported ones, leave the field empty and the comment says why.
Nothing is guessed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# The event columns ingest keeps a camera in: camera_make, camera_model, ...
CAMERA_PARTS = ("make", "model", "serial", "name")


@dataclass(frozen=True)
class Camera:
    """One camera as its events describe it; ``None`` fields were not reported."""

    make: str | None
    model: str | None
    serial: str | None
    name: str | None

    @property
    def manufacturer_model(self) -> str | None:
        """Camtrap DP's ``manufacturer-model`` form, e.g. ``RECONYX-HF2X``."""
        make = (self.make or "").strip()
        model = (self.model or "").strip()
        # Some cameras repeat the maker in Model ("SPYPOINT LINK-MICRO"): say it once.
        if make and model.casefold().startswith(make.casefold()):
            model = model[len(make) :].strip(" -_")
        return "-".join(part for part in (make, model) if part) or None

    @property
    def identifier(self) -> str | None:
        """The serial number, else the name the technician gave the camera."""
        return self.serial or self.name

    def label(self) -> str:
        text = self.manufacturer_model or "a camera of unknown model"
        if self.serial:
            text += f" serial {self.serial}"
        if self.name:
            text += f' named "{self.name}"'
        return text


def camera_of(event: dict[str, Any]) -> Camera | None:
    """The camera an imported event names; ``None`` for the trap's own capture."""
    fields = [event.get(f"camera_{part}") for part in CAMERA_PARTS]
    if event.get("import_id") is None and not any(fields):
        return None
    make, model, serial, name = fields
    return Camera(make, model, serial, name)


@dataclass(frozen=True)
class DeploymentCamera:
    camera_id: str | None
    camera_model: str | None
    comment: str | None  # why the fields are what they are, when imports are involved


def deployment_camera(
    deployment: dict[str, Any], events: Iterable[dict[str, Any]]
) -> DeploymentCamera:
    """``cameraID``/``cameraModel`` of ``deployment`` (an ingest row) given its events."""
    seen = [camera_of(e) for e in events]
    cameras = Counter(camera for camera in seen if camera is not None)
    own = seen.count(None)
    recorded_model = deployment.get("camera_model")
    recorded_id = deployment["camera_id"] if deployment.get("camera_id_recorded") else None
    if not cameras:
        # Only the trap's own captures: the device is the camera, as before imports existed.
        return DeploymentCamera(deployment["camera_id"], recorded_model, None)
    single = next(iter(cameras)) if len(cameras) == 1 and not own else None
    model = recorded_model or (single.manufacturer_model if single else None)
    camera_id = recorded_id or (single.identifier if single else None)
    parts = [f"{n} event(s) imported from {cam.label()}" for cam, n in cameras.most_common()]
    if own:
        parts.append(f"{own} event(s) captured by the trap itself")
    comment = ", ".join(parts)
    overridden = single is not None and (
        (recorded_model and recorded_model != single.manufacturer_model)
        or (recorded_id and recorded_id != single.identifier)
    )
    if single is None or overridden:
        why = "several cameras, so " if single is None else ""
        comment += f"; {why}cameraModel {_source(recorded_model, model)} and cameraID " + (
            _source(recorded_id, camera_id)
        )
    return DeploymentCamera(camera_id, model, comment)


def _source(recorded: str | None, value: str | None) -> str:
    if recorded:
        return "is the registry's"
    return "is the imported camera's" if value else "is left empty"
