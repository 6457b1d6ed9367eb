"""Deployments (Camtrap DP 1.0.2): the local history file and the record sent to the registry.

``/var/lib/camtrap/deployments.json`` keeps every deployment this trap had, newest last; the
open one has ``deploymentEnd`` null. Moving the trap (another location name or coordinates)
ends the open deployment and starts a new one; re-running at the same place keeps it and only
updates what the technician changed (height, tilt, ...).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioning.paths import Paths
from provisioning.questions import Answers
from provisioning.system import Effects


def now_iso() -> str:
    """ISO 8601 with offset, as Camtrap DP wants, to the second."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


@dataclass
class History:
    device_id: str
    deployments: list[dict[str, Any]] = field(default_factory=list)
    registry: dict[str, Any] = field(default_factory=dict)  # url, ca_file for later sends

    @property
    def open(self) -> dict[str, Any] | None:
        last = self.deployments[-1] if self.deployments else None
        return last if last is not None and last.get("deploymentEnd") is None else None

    def to_json(self) -> str:
        body = {
            "device_id": self.device_id,
            "registry": self.registry,
            "deployments": self.deployments,
        }
        return json.dumps(body, indent=2) + "\n"


def load_history(path: Path, device_id: str) -> History:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return History(device_id)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable deployment history ({exc})") from exc
    return History(
        data.get("device_id", device_id), data.get("deployments", []), data.get("registry", {})
    )


def save_history(paths: Paths, effects: Effects, history: History) -> None:
    effects.mkdir(paths.state_dir, 0o750)
    effects.write(paths.history, history.to_json().encode())


def _record(answers: Answers, device_id: str, deployment_id: str, start: str) -> dict[str, Any]:
    country = answers.get("deployment.country")
    return {
        "deploymentID": deployment_id,
        "locationName": answers["deployment.location_name"],
        "latitude": answers["deployment.latitude"],
        "longitude": answers["deployment.longitude"],
        "coordinateUncertainty": answers.get("deployment.coordinate_uncertainty_m"),
        "deploymentStart": start,
        "deploymentEnd": None,
        "setupBy": answers.get("deployment.setup_by"),
        "cameraID": device_id,
        "cameraModel": "camtrap Raspberry Pi camera trap",
        "cameraHeight": answers.get("deployment.camera_height_m"),
        "cameraTilt": answers.get("deployment.camera_tilt_deg"),
        "cameraHeading": answers.get("deployment.camera_heading_deg"),
        "baitUse": answers.get("deployment.bait_use"),
        "featureType": answers.get("deployment.feature_type"),
        "habitat": answers.get("deployment.habitat"),
        "countryCode": country,
        "admin1": answers.get("deployment.admin1") if country == "USA" else None,
        "registrySent": False,
    }


def same_place(record: dict[str, Any], answers: Answers) -> bool:
    return (
        record.get("locationName") == answers["deployment.location_name"]
        and round(float(record["latitude"]), 6) == round(answers["deployment.latitude"], 6)
        and round(float(record["longitude"]), 6) == round(answers["deployment.longitude"], 6)
    )


@dataclass(frozen=True)
class Plan:
    current: dict[str, Any]
    ended: dict[str, Any] | None  # the deployment this run ends, if the trap moved
    started: bool  # a new deployment starts now


def plan(history: History, answers: Answers, device_id: str) -> Plan:
    """Decide, without changing anything, which deployment this run leaves open."""
    now = now_iso()
    wanted_id = answers.get("deployment.deployment_id")
    open_one = history.open
    if (
        open_one is not None
        and same_place(open_one, answers)
        and (not wanted_id or wanted_id == open_one["deploymentID"])
    ):
        updated = _record(answers, device_id, open_one["deploymentID"], open_one["deploymentStart"])
        changed = {k: v for k, v in updated.items() if k != "registrySent"} != {
            k: v for k, v in open_one.items() if k != "registrySent"
        }
        updated["registrySent"] = open_one.get("registrySent", False) and not changed
        return Plan(updated, None, False)
    compact = now.replace("-", "").replace(":", "").replace("+0000", "Z")[:15] + "Z"
    used = {d["deploymentID"] for d in history.deployments}
    if wanted_id and wanted_id in used:
        raise ValueError(f"deployment id {wanted_id!r} was used before on this trap")
    deployment_id = wanted_id or f"{device_id}-{compact}"
    suffix = 1
    while deployment_id in used:  # moved twice within one second
        suffix += 1
        deployment_id = f"{device_id}-{compact}-{suffix}"
    ended = None
    if open_one is not None:
        ended = {**open_one, "deploymentEnd": now, "registrySent": False}
    return Plan(_record(answers, device_id, deployment_id, now), ended, True)


def apply(history: History, plan_: Plan) -> None:
    if plan_.ended is not None:
        history.deployments[-1] = plan_.ended
    if plan_.started:
        history.deployments.append(plan_.current)
    else:
        history.deployments[-1] = plan_.current


def registry_record(record: dict[str, Any]) -> dict[str, Any]:
    """What the registry stores: Camtrap DP fields and countryCode/admin1, no local flags."""
    return {k: v for k, v in record.items() if k != "registrySent"}
