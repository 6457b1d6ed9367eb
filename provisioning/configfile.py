"""``/etc/camtrap/camtrap.toml`` from the answers: built, validated whole, then written atomically.

What the technician did not answer is kept from the existing file (hand edits survive a re-run);
what they answered replaces it. Passwords go to ``secrets.toml`` (0600, service user), named by
``[secrets] file``; the main file holds none.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from device.config import Settings, describe_validation_error, to_toml
from provisioning.config_bounds import config_field
from provisioning.credentials import Credentials
from provisioning.paths import Paths
from provisioning.questions import Answers
from provisioning.system import Effects, ProvisionError

HEADER = (
    "# Written by camtrap-provision. Re-run it to change answers; keys it does not ask about\n"
    "# may be edited by hand and are kept. Passwords live in the [secrets] file.\n\n"
)


def read_existing(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProvisionError(
            f"{path} exists but cannot be read ({exc}); move it aside and re-run"
        ) from exc


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _drop_none(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _drop_none(v) for k, v in data.items() if v is not None}
    return data


def build(
    paths: Paths,
    existing: dict[str, Any],
    answers: Answers,
    device_id: str,
    deployment_id: str,
    creds: Credentials | None,
    broker: tuple[str | None, int | None],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(main file data, secrets data)."""
    country = answers.get("deployment.country")
    overlay: dict[str, Any] = {
        "device": {
            "id": device_id,
            "deployment_id": deployment_id,
            "timezone": answers.get("device.timezone") or config_field("device.timezone").default,
        },
        "location": {
            "latitude": answers["deployment.latitude"],
            "longitude": answers["deployment.longitude"],
            "coordinate_uncertainty_m": answers.get("deployment.coordinate_uncertainty_m"),
            "country": country,
            "admin1": answers.get("deployment.admin1") if country == "USA" else None,
        },
        "pir": {"pin": answers["pir.pin"]},
        "ir": {"pin": answers.get("ir.pin")},
        "capture": {
            "burst_frames": answers["capture.burst_frames"],
            "cooldown_s": answers["capture.cooldown_s"],
            "timelapse_interval_s": answers["capture.timelapse_interval_s"],
        },
    }
    host, port = broker
    mqtt: dict[str, Any] = {}
    if host:
        mqtt.update(host=host, port=port or config_field("uplink.mqtt.port").default, tls=True)
    if creds is not None:
        mqtt.update(ca_file=str(creds.ca), cert_file=str(creds.cert), key_file=str(creds.key))
    if mqtt:
        overlay["uplink"] = {"transport": "mqtt", "mqtt": mqtt}
    if paths.relocated:
        # Everything lives under --root (tests, the demo): so must the agent's own paths.
        overlay["storage"] = {
            "data_dir": str(paths.state_dir),
            "fallback_dir": str(paths.fallback_dir),
        }
        overlay["clock"] = {
            "manual_marker": str(paths.manual_marker),
            "timesync_flag": str(paths.timesync_flag),
            "rtc_device": str(paths.rtc),
        }
    else:
        overlay["clock"] = {"manual_marker": str(paths.manual_marker)}

    data = merge(existing, overlay)
    # A stale admin1 or IR pin from an earlier run must go when the answer is now "none".
    for section, key in (("location", "admin1"), ("ir", "pin")):
        if overlay[section].get(key) is None:
            data.get(section, {}).pop(key, None)
    data = merge(data, answers.get("config") or {})

    secrets: dict[str, Any] = {}
    password = data.get("uplink", {}).get("mqtt", {}).pop("password", None)
    if answers.get("broker.username"):
        data.setdefault("uplink", {}).setdefault("mqtt", {})["username"] = answers[
            "broker.username"
        ]
    password = answers.get("broker.password") or password
    if password:
        secrets = {"uplink": {"mqtt": {"password": password}}}
        data["secrets"] = {"file": str(paths.secrets)}
    return _drop_none(data), secrets


def validate(data: dict[str, Any], secrets: dict[str, Any]) -> Settings:
    full = merge(data, secrets)
    try:
        return Settings(**full)
    except ValidationError as exc:
        raise ProvisionError(
            "the configuration would not load: " + describe_validation_error(exc, full, "answers")
        ) from exc


def write(paths: Paths, effects: Effects, data: dict[str, Any], secrets: dict[str, Any]) -> None:
    """Secrets first, then the main file: the main file is the commit point."""
    effects.mkdir(paths.config_dir, 0o755)
    if secrets:
        text = to_toml(secrets)
        masked = "\n".join(
            line.split("=")[0] + '= "********"' if "=" in line else line
            for line in text.splitlines()
        )
        effects.write(
            paths.secrets, text.encode(), private=True, preview=masked, step="write:secrets"
        )
    text = HEADER + to_toml(data)
    effects.write(paths.config, text.encode(), mode=0o644, preview=text, step="write:config")
