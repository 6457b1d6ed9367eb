"""Publishing a signed pack to devices, with a canary, and reading back how it went.

A rollout copies the pack under ``<root>/packs/<name>@<version>/`` (what ``PackServer``
serves), records itself in ``<root>/rollouts.json`` and publishes a retained ``desired_model``
to each target's ``down/model`` topic: first to the canary devices, then, once ``canary`` of
them reported a successful switch, to the rest. A canary that reports a failure halts the
rollout. Outcomes come from the devices' ``model.*`` reports that ingest stored in
``<root>/ingest.sqlite`` (table ``device_events``).

A head pack (format 2) rolls out exactly like a full one. It only serves on the backbone it was
fitted on, and a trap refuses any other before downloading a byte; so that an operator learns
it before the canary does, publishing warns about each target whose latest heartbeat reports
another model than the head's backbone.
"""

from __future__ import annotations

import json
import shutil
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cloud_stub.models.serving import parse_serving
from device.contracts import protocol
from device.contracts.durable import atomic_write
from device.contracts.manifest import Manifest, PackError
from device.contracts.protocol import Command, DesiredConfig, DesiredModel

ROLLOUTS = "rollouts.json"
GROUPS = "groups.json"

SUCCESS = ("installed", "confirmed")
FAILURE = ("rejected", "failed", "rolled_back")
_OUTCOME = {
    "model.receive.failed": "rejected",
    "model.verify.failed": "rejected",
    "model.download.failed": "failed",
    "model.stage.failed": "failed",
    "model.selftest.failed": "failed",
    "model.switch.failed": "failed",
    "model.switch.ok": "installed",
    "model.trial.ok": "confirmed",
    "model.trial.failed": "rolled_back",
    "model.rollback.ok": "rolled_back",
    "model.rollback.failed": "rolled_back",
}


class RolloutError(RuntimeError):
    pass


@dataclass(frozen=True)
class MqttAdmin:
    """How the stub reaches the broker: as a user allowed to write ``camtrap/+/down/#``."""

    host: str
    port: int
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    client_id: str = "camtrap-models"
    tls: bool = True


class Publisher:
    """A short-lived MQTT client that publishes down-topic messages and waits for PUBACK."""

    def __init__(self, admin: MqttAdmin, timeout: float = 15.0) -> None:
        self.timeout = timeout
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{admin.client_id}-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if admin.tls:
            context = ssl.create_default_context(
                cafile=str(admin.ca_file) if admin.ca_file else None
            )
            if admin.cert_file:
                context.load_cert_chain(
                    str(admin.cert_file), str(admin.key_file) if admin.key_file else None
                )
            client.tls_set_context(context)
        connected = threading.Event()
        client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
        client.connect(admin.host, admin.port, 60)
        client.loop_start()
        if not connected.wait(timeout):
            client.loop_stop()
            raise RolloutError(f"no MQTT session with {admin.host}:{admin.port}")
        self.client = client

    def publish(self, message: DesiredModel | DesiredConfig | Command, retain: bool) -> None:
        info = self.client.publish(
            protocol.topic_for(message), protocol.encode(message), qos=1, retain=retain
        )
        info.wait_for_publish(self.timeout)
        if not info.is_published():
            raise RolloutError(f"broker did not accept {message.type} for {message.device_id}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- registry files ------------------------------------------------------------------------


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(path, text.encode(), make_parents=True)


def set_group(root: Path, name: str, devices: list[str]) -> None:
    groups = _read_json(root / GROUPS, {})
    groups[name] = devices
    _write_json(root / GROUPS, groups)


def group_members(root: Path, name: str) -> list[str]:
    groups = _read_json(root / GROUPS, {})
    if name not in groups:
        raise RolloutError(f"no group {name!r} (camtrap-cloud model group {name} DEVICE...)")
    return list(groups[name])


def rollouts(root: Path) -> dict[str, dict[str, Any]]:
    return _read_json(root / ROLLOUTS, {})


def _save_rollout(root: Path, rollout: dict[str, Any]) -> None:
    everything = rollouts(root)
    everything[rollout["id"]] = rollout
    _write_json(root / ROLLOUTS, everything)


# -- device reports ------------------------------------------------------------------------


def read_reports(
    root: Path, device_ids: Iterable[str] | None = None, *, url: str | None = None
) -> list[dict[str, Any]]:
    """``model.*`` device events stored by ingest, oldest first, with their JSON decoded
    (``url``: the PostgreSQL store; None: ``$CAMTRAP_CLOUD_DB``, else the SQLite file)."""
    from cloud_stub.ingest.opening import database_url
    from cloud_stub.ingest.store import open_store_db, store_path

    if database_url(url) is None and not store_path(root).exists():
        return []  # nothing ingested yet: no device has reported
    # A damaged store is said as one line (StoreError), never read as "no reports".
    db = open_store_db(root, url=url)
    try:
        if not db.columns("device_events"):
            return []  # a store from before device events
        # item_id: a tie-break both engines share (rowid, insertion order, is SQLite's alone).
        # The pattern is a parameter: a literal % in the SQL is a placeholder to psycopg.
        rows = db.execute(
            "SELECT device_id, at, severity, code, message FROM device_events "
            "WHERE code LIKE ? ORDER BY at, item_id",
            ("model.%",),
        ).fetchall()
    finally:
        db.close()
    wanted = set(device_ids) if device_ids is not None else None
    out = []
    for device_id, at, severity, code, message in rows:
        if wanted is not None and device_id not in wanted:
            continue
        try:
            details = json.loads(message)
        except ValueError:
            details = {"detail": message}
        out.append({"device": device_id, "at": at, "severity": severity, "code": code, **details})
    return out


def device_outcome(reports: list[dict[str, Any]], device: str, name: str, version: str) -> dict:
    """The latest state of one device for one pack version."""
    mine = [
        r
        for r in reports
        if r["device"] == device and r.get("version") == version and r.get("name", name) == name
    ]
    outcome, last = "pending", None
    for report in mine:
        last = report
        outcome = _OUTCOME.get(report["code"], outcome if outcome != "pending" else "in_progress")
    return {
        "device": device,
        "outcome": outcome,
        "last_code": last["code"] if last else None,
        "detail": (last or {}).get("detail", ""),
        "at": last["at"] if last else None,
    }


# -- publishing ----------------------------------------------------------------------------


def stage_pack(root: Path, pack_dir: Path) -> dict[str, Any]:
    """Copy a signed pack under ``<root>/packs``; returns its manifest document (what devices
    verify the signature over, so it is offered exactly as written)."""
    document = json.loads((pack_dir / "manifest.json").read_text())
    try:
        manifest = Manifest.from_document(document)
    except PackError as exc:
        raise RolloutError(f"{pack_dir}: {exc}") from None
    if manifest.signature is None:
        raise RolloutError(f"{pack_dir}: the manifest is not signed (camtrap-cloud model sign)")
    # Served (and offered) as name@version: the URL the devices download from. A head's
    # classified_by also names its backbone, which is not part of the pack's address.
    served = root / "packs" / f"{manifest.name}@{manifest.version}"
    if served.exists():
        if json.loads((served / "manifest.json").read_text()) != document:
            raise RolloutError(f"{served} exists with a different manifest")
        return document
    tmp = served.with_name(f".{served.name}.tmp-{uuid.uuid4().hex[:6]}")
    shutil.copytree(pack_dir, tmp)
    tmp.rename(served)
    return document


def latest_model_versions(
    root: Path, devices: Iterable[str], *, url: str | None = None
) -> dict[str, str]:
    """What each device's newest heartbeat held by ingest says it serves (``model_version``);
    devices that never reported one are left out."""
    from cloud_stub.ingest.opening import database_url
    from cloud_stub.ingest.store import open_store_db, store_path

    wanted = list(devices)
    if not wanted or (database_url(url) is None and not store_path(root).exists()):
        return {}
    db = open_store_db(root, url=url)
    try:
        found: dict[str, str] = {}
        if not db.columns("telemetry"):
            return {}
        for device in wanted:
            row = db.execute(
                "SELECT payload FROM telemetry WHERE device_id = ? ORDER BY sent_at DESC LIMIT 1",
                (device,),
            ).fetchone()
            if row is None:
                continue
            try:
                payload = json.loads(row[0])
            except ValueError:
                continue
            version = payload.get("model_version", payload.get("modelVersion"))
            if isinstance(version, str) and version:
                found[device] = version
    finally:
        db.close()
    return found


def backbone_warnings(
    root: Path, manifest: Manifest, targets: Iterable[str], *, url: str | None = None
) -> list[str]:
    """One line per target whose latest heartbeat names another model than the head's
    backbone ([] for a full pack, and for a device that has not reported yet).

    Only name@version can be compared here (a heartbeat carries no sha256); the trap itself
    compares the model file's sha256 and refuses a mismatch before downloading."""
    backbone = manifest.backbone
    if manifest.kind != "head" or backbone is None:
        return []
    needed = f"{backbone.name}@{backbone.version}"
    lines = []
    for device, reported in latest_model_versions(root, targets, url=url).items():
        serving = parse_serving(reported)
        if serving is not None and serving.backbone != needed:
            lines.append(
                f"{device} serves {serving.backbone}, but head {manifest.name}@"
                f"{manifest.version} needs backbone {needed} (sha256 {backbone.sha256[:12]}):"
                " the trap will refuse it unless its model file is that one"
            )
    return lines


def _desired(rollout: dict[str, Any], manifest: dict[str, Any], device: str) -> DesiredModel:
    return DesiredModel(
        device_id=device,
        rollout_id=rollout["id"],
        name=manifest["name"],
        version=manifest["version"],
        url=rollout["url"],
        manifest=manifest,
        published_at=datetime.now(UTC),
    )


def publish_pack(
    root: Path,
    pack_dir: Path,
    targets: list[str],
    publisher: Publisher,
    *,
    base_url: str,
    canary: int = 0,
    wait_timeout: float = 600.0,
    poll_s: float = 0.25,
    on_progress: Callable[[str], None] = lambda _: None,
    on_warning: Callable[[str], None] | None = None,
    db_url: str | None = None,
) -> dict[str, Any]:
    """Run a rollout to the end (or to a halt); returns its record. ``on_warning`` (default:
    ``on_progress``) hears, once per target, that a head's backbone is not what it serves.
    ``db_url``: the PostgreSQL ingest store the devices' reports are read from."""
    if not targets:
        raise RolloutError("no target devices")
    if canary < 0 or canary > len(targets):
        raise RolloutError(f"--canary {canary} with {len(targets)} targets")
    manifest = stage_pack(root, pack_dir)
    name, version = manifest["name"], manifest["version"]
    warnings = backbone_warnings(root, Manifest.from_document(manifest), targets, url=db_url)
    for line in warnings:
        (on_warning or on_progress)(line)
    rollout: dict[str, Any] = {
        "id": f"r{datetime.now(UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}",
        "name": name,
        "version": version,
        "url": f"{base_url.rstrip('/')}/packs/{name}@{version}",
        "targets": targets,
        "canary": targets[:canary],
        "phase": "canary" if canary else "rollout",
        "published": {},
        "created": datetime.now(UTC).isoformat(),
        "warnings": warnings,
    }

    def send(devices: list[str]) -> None:
        for device in devices:
            publisher.publish(_desired(rollout, manifest, device), retain=True)
            rollout["published"][device] = datetime.now(UTC).isoformat()
        _save_rollout(root, rollout)

    if canary:
        send(rollout["canary"])
        on_progress(f"{rollout['id']}: canary {', '.join(rollout['canary'])}")
        verdict = wait_for(
            root, rollout, rollout["canary"], canary, wait_timeout, poll_s, url=db_url
        )
        if verdict != "ok":
            rollout["phase"] = f"halted ({verdict})"
            _save_rollout(root, rollout)
            on_progress(f"{rollout['id']}: halted: {verdict}")
            return rollout
        rollout["phase"] = "rollout"
    rest = [d for d in targets if d not in rollout["published"]]
    send(rest)
    on_progress(f"{rollout['id']}: published to {len(rollout['published'])} device(s)")
    rollout["phase"] = "published"
    _save_rollout(root, rollout)
    return rollout


def wait_for(
    root: Path,
    rollout: dict[str, Any],
    devices: list[str],
    needed: int,
    timeout: float,
    poll_s: float = 0.25,
    *,
    url: str | None = None,
) -> str:
    """``ok`` once ``needed`` of ``devices`` succeeded; else why not (a failure, a timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        reports = read_reports(root, devices, url=url)
        states = [device_outcome(reports, d, rollout["name"], rollout["version"]) for d in devices]
        bad = [s for s in states if s["outcome"] in FAILURE]
        if bad:
            return f"{bad[0]['device']} {bad[0]['outcome']}: {bad[0]['detail']}"[:300]
        if sum(s["outcome"] in SUCCESS for s in states) >= needed:
            return "ok"
        if time.monotonic() >= deadline:
            return f"timeout after {timeout:.0f} s"
        time.sleep(poll_s)


def status(
    root: Path, rollout_id: str | None = None, *, url: str | None = None
) -> list[dict[str, Any]]:
    """One row per (rollout, target device): phase and the device's outcome."""
    everything = rollouts(root)
    chosen = [everything[rollout_id]] if rollout_id else list(everything.values())
    reports = read_reports(root, url=url)
    rows = []
    for rollout in sorted(chosen, key=lambda r: r["created"]):
        for device in rollout["targets"]:
            state = device_outcome(reports, device, rollout["name"], rollout["version"])
            if device not in rollout["published"]:
                state["outcome"] = "not_published"
            rows.append(
                {
                    "rollout": rollout["id"],
                    "pack": f"{rollout['name']}@{rollout['version']}",
                    "phase": rollout["phase"],
                    "canary": device in rollout["canary"],
                    **state,
                }
            )
    return rows


def desired_config(device: str, version: int, values: dict[str, dict[str, Any]]) -> DesiredConfig:
    return DesiredConfig(
        device_id=device, version=version, values=values, published_at=datetime.now(UTC)
    )


def command(device: str, name: str, command_id: str | None = None) -> Command:
    return Command(
        device_id=device,
        command_id=command_id or f"cmd-{uuid.uuid4()}",
        name=name,
        issued_at=datetime.now(UTC),
    )
