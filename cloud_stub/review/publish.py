"""Publishing a model pack (admin only). The rollout itself belongs to the OTA module,
``cloud_stub.models``: this page only starts one and shows how rollouts went. Without that
module, or without a broker to publish through, the route answers 501 and says why."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from flask import abort, flash, redirect, url_for

log = logging.getLogger("camtrap-cloud.review")

NOT_INSTALLED = (
    "model publishing is part of the OTA module (cloud_stub.models), which is not installed here"
)
NOT_CONFIGURED = (
    "publishing from this page needs a broker: start serve with --ota-mqtt-host and "
    "--ota-base-url (or use `camtrap-cloud model publish`)"
)


@dataclass(frozen=True)
class OtaSettings:
    """How ``camtrap-cloud serve`` reaches the broker and where devices download packs."""

    mqtt_host: str
    mqtt_port: int
    base_url: str
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


def rollout_module() -> ModuleType | None:
    try:
        return importlib.import_module("cloud_stub.models.rollout")
    except ModuleNotFoundError:
        return None


def available() -> bool:
    return rollout_module() is not None


def status(root: Path, url: str | None = None) -> list[dict[str, Any]]:
    module = rollout_module()
    return module.status(root, url=url) if module is not None else []


def handle(
    form: Mapping[str, str],
    username: str,
    root: Path,
    ota: OtaSettings | None,
    db_url: str | None = None,
) -> Any:
    ro = rollout_module()
    if ro is None:
        abort(501, NOT_INSTALLED)
    if ota is None:
        abort(501, NOT_CONFIGURED)
    pack = Path(form.get("pack", "").strip())
    targets = [t for t in form.get("targets", "").replace(",", " ").split() if t]
    try:
        canary = int(form.get("canary") or 0)
    except ValueError:
        abort(400, "canary must be a whole number")
    if not (pack / "manifest.json").is_file() or not targets:
        abort(400, "give a signed pack directory on this server and at least one device")
    admin = ro.MqttAdmin(
        host=ota.mqtt_host,
        port=ota.mqtt_port,
        ca_file=ota.ca_file,
        cert_file=ota.cert_file,
        key_file=ota.key_file,
        client_id="camtrap-review",
    )

    def run() -> None:
        # A canary rollout waits for device reports: minutes, so never inside the request.
        try:
            with ro.Publisher(admin) as publisher:
                ro.publish_pack(
                    root,
                    pack,
                    targets,
                    publisher,
                    base_url=ota.base_url,
                    canary=canary,
                    on_warning=lambda line: log.warning("rollout of %s: %s", pack, line),
                    db_url=db_url,
                )
        except Exception:
            log.exception("rollout of %s started by %s failed", pack, username)

    threading.Thread(target=run, name="rollout", daemon=True).start()
    log.info("%s started a rollout of %s to %s", username, pack, ", ".join(targets))
    flash(f"rollout of {pack.name} to {len(targets)} device(s) started", "ok")
    return redirect(url_for("models_view"))
