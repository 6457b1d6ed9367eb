"""Signing and the OTA world shared by the other ``test_ota_*`` files.

The helpers at the top build what every OTA test needs for real: Ed25519 keys made here (never
stored in the repo), tiny model packs with golden images, signed manifests, the stub's HTTP
pack server, and a device OTA service talking to a real mosquitto.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_stub.models import rollout as ro
from cloud_stub.models.keys import new_keypair
from cloud_stub.models.server import PackServer
from cloud_stub.models.signing import sign_pack
from device.config import Settings
from device.contracts.signing import (
    SignatureError,
    canonical_manifest,
    key_id,
    load_public_key,
    sign_manifest,
    trusted_keys,
    verify_manifest,
)
from device.ota.engine_guard import EngineGuard
from device.ota.layout import load_active_engine
from device.ota.remote_commands import AgentCallbacks
from device.ota.reports import TransportReporter
from device.ota.service import OtaService
from device.vision.pack import write_pack
from tests.support.broker import INGEST_USER, Broker
from tests.support.uplink import device_link, query, running_ingest, wait_until
from tests.support.world import jpeg_bytes, trap_settings

MODELS = Path(__file__).parent / "data" / "models"
LABELS = ["fox", "deer", "person", "rock"]
PACK_NAME = "tiny-ota"


# -- helpers shared by the OTA tests ---------------------------------------------------------


def make_pack(
    out: Path, version: str, *, expect_top: list[str] | None = None, top_k: int = 4, pad: int = 0
) -> Path:
    """An unsigned tiny pack: a real 4-class TFLite model, a golden image, optional padding
    (a bigger pack makes downloads and copies take long enough to be interrupted)."""
    files = {
        "model.tflite": (MODELS / "tiny_float32.tflite").read_bytes(),
        "labels.txt": ("\n".join(LABELS) + "\n").encode(),
        "golden/scene.jpg": jpeg_bytes(64, 64, seed=7),
    }
    if pad:
        files["padding.bin"] = bytes(range(256)) * (pad // 256)
    manifest = {
        "name": PACK_NAME,
        "version": version,
        "min_agent_version": "0.1.0",
        "model": {
            "file": "model.tflite",
            "input": {"width": 32, "height": 32, "channels": 3, "color": "RGB"},
            "preprocess": {"resize": "squash", "mean": [127.0] * 3, "std": [128.0] * 3},
            "output": "probabilities",
        },
        "labels": {"file": "labels.txt", "format": "plain"},
        # Every label is in the top 4 of 4: the self-test passes unless told otherwise.
        "golden": [
            {"file": "golden/scene.jpg", "expect_top": expect_top or LABELS, "top_k": top_k}
        ],
    }
    return write_pack(out, manifest, files)


def signed_pack(out: Path, version: str, key: Path, **kwargs: Any) -> Path:
    make_pack(out, version, **kwargs)
    sign_pack(out, key, expires_in=timedelta(days=7))
    return out


def resign_manifest(pack: Path, private_key: Ed25519PrivateKey, **changes: Any) -> None:
    """Edit a pack's manifest and sign it again (for manifests ``sign_pack`` would refuse)."""
    manifest = json.loads((pack / "manifest.json").read_text())
    manifest.update(changes)
    (pack / "manifest.json").write_text(json.dumps(sign_manifest(manifest, private_key)))


def private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


@dataclass
class Device:
    settings: Settings
    service: OtaService
    link: Any
    commands: list[str] = field(default_factory=list)

    @property
    def serving(self) -> str | None:
        engine = self.service.guard.engine
        return None if engine is None else engine.classified_by

    def stop(self) -> None:
        self.service.stop()
        self.link.close()


@dataclass
class OtaWorld:
    root: Path  # the cloud stub's data dir (ingest + packs + rollouts)
    broker: Broker
    server: PackServer
    key: Path  # the fleet's signing key (private), made for this test
    pub: Path
    publisher: ro.Publisher
    devices: dict[str, Device] = field(default_factory=dict)
    tmp: Path = Path()

    def add_device(
        self,
        device_id: str,
        *,
        trust: list[Path] | None = None,
        callbacks: AgentCallbacks | None = None,
        factory: Path | None = None,
        **ota: Any,
    ) -> Device:
        home = self.tmp / device_id
        home.mkdir()
        first = factory or make_pack(home / "factory-pack", "1.0.0")
        settings = trap_settings(
            home,
            device={"id": device_id, "deployment_id": "dep-1"},
            vision={"enabled": True, "pack": first},
            ota={
                "trusted_keys": [str(p) for p in (self.pub,) if trust is None]
                + list(map(str, trust or [])),
                "trusted_keys_dir": home / "no-package-keys",
                "download_retries": 3,
                **ota,
            },
        )
        guard = EngineGuard(load_active_engine(settings))
        link = device_link(self.broker, device_id)
        service = OtaService(
            settings, TransportReporter(link), guard=guard, callbacks=callbacks
        ).start()
        link.on_downlink("#", service.handle_downlink)
        link.connect(timeout=10)
        device = Device(settings, service, link)
        self.devices[device_id] = device
        return device

    def publish(self, pack: Path, *devices: str, canary: int = 0) -> dict[str, Any]:
        return ro.publish_pack(
            self.root,
            pack,
            list(devices),
            self.publisher,
            base_url=self.server.url,
            canary=canary,
            wait_timeout=60,
        )

    def reports(self, device_id: str) -> list[dict[str, Any]]:
        return [r for r in ro.read_reports(self.root) if r["device"] == device_id]

    def codes(self, device_id: str, version: str | None = None) -> list[str]:
        return [
            r["code"]
            for r in self.reports(device_id)
            if version is None or r.get("version") == version
        ]

    def events(self, device_id: str, prefix: str) -> list[dict[str, Any]]:
        """Every device event with a code starting ``prefix``, details decoded, oldest first."""
        rows = query(
            self.root,
            "SELECT code, message FROM device_events WHERE device_id=? AND code LIKE ?"
            " ORDER BY at, rowid",
            device_id,
            prefix + "%",
        )
        return [{"code": code, **json.loads(message)} for code, message in rows]

    def send(self, message: Any, retain: bool = False) -> None:
        self.publisher.publish(message, retain=retain)

    def wait_for_code(self, device_id: str, *codes: str, timeout: float = 30.0) -> list[str]:
        """The device's report codes once one of ``codes`` arrived (a bound, not a check)."""
        wait_until(lambda: any(c in self.codes(device_id) for c in codes), timeout)
        self.devices[device_id].service.wait_idle(timeout)
        return self.codes(device_id)


@contextlib.contextmanager
def ota_world(tmp_path: Path, broker: Broker, **server_kwargs: Any) -> Iterator[OtaWorld]:
    root = tmp_path / "cloud"
    (root / "packs").mkdir(parents=True)
    key, pub = new_keypair(tmp_path / "fleet-keys")
    cert, cert_key = broker.client_cert(INGEST_USER)
    admin = ro.MqttAdmin("127.0.0.1", broker.port, broker.ca_file, cert, cert_key)
    with running_ingest(broker, root), PackServer(root / "packs", **server_kwargs) as server:
        publisher = ro.Publisher(admin)
        world = OtaWorld(root, broker, server, key, pub, publisher, tmp=tmp_path)
        try:
            yield world
        finally:
            for device in world.devices.values():
                device.stop()
            publisher.close()


# -- the signature itself --------------------------------------------------------------------


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Ed25519PrivateKey, dict[str, Any]]:
    key = Ed25519PrivateKey.generate()
    return key, {key_id(key.public_key()): key.public_key()}


def test_a_signed_manifest_verifies_with_its_key_and_names_it(keypair):
    key, trusted = keypair
    signed = sign_manifest({"name": "m", "version": "1.0.0", "signature": None}, key)
    assert verify_manifest(signed, trusted) == key_id(key.public_key())
    assert signed["signature"]["alg"] == "ed25519"


def test_any_change_to_a_signed_manifest_breaks_the_signature(keypair):
    key, trusted = keypair
    signed = sign_manifest(
        {"name": "m", "version": "1.0.0", "files": {"a": {"sha256": "0" * 64, "size": 3}}}, key
    )
    tampered = json.loads(json.dumps(signed))
    tampered["files"]["a"]["size"] = 4
    with pytest.raises(SignatureError, match="does not verify"):
        verify_manifest(tampered, trusted)


def test_key_order_and_whitespace_do_not_matter_but_the_domain_prefix_does(keypair):
    key, trusted = keypair
    signed = sign_manifest({"b": 1, "a": {"y": "é", "x": [1, 2]}}, key)
    reordered = json.loads(json.dumps(signed, indent=4, sort_keys=False))
    reordered = dict(reversed(list(reordered.items())))
    assert verify_manifest(reordered, trusted)
    assert (
        canonical_manifest(signed)
        == b'camtrap-model-pack/1 manifest\n{"a":{"x":[1,2],"y":"\xc3\xa9"},"b":1}'
    )
    # A signature over the same JSON without the prefix is not a manifest signature.
    bare = key.sign(canonical_manifest(signed)[len(b"camtrap-model-pack/1 manifest\n") :])
    forged = {
        **signed,
        "signature": {**signed["signature"], "value": base64.b64encode(bare).decode()},
    }
    with pytest.raises(SignatureError):
        verify_manifest(forged, trusted)


def test_unsigned_unknown_key_and_other_algorithms_are_refused(keypair):
    key, trusted = keypair
    with pytest.raises(SignatureError, match="not signed"):
        verify_manifest({"name": "m", "signature": None}, trusted)
    other = Ed25519PrivateKey.generate()
    with pytest.raises(SignatureError, match="does not trust"):
        verify_manifest(sign_manifest({"name": "m"}, other), trusted)
    signed = sign_manifest({"name": "m"}, key)
    signed["signature"]["alg"] = "rsa"
    with pytest.raises(SignatureError, match="algorithm"):
        verify_manifest(signed, trusted)


def test_trusted_keys_come_from_pem_files_inline_base64_and_the_package_dir(tmp_path):
    _, pub_a = new_keypair(tmp_path / "a")
    _, pub_b = new_keypair(tmp_path / "b")
    _, pub_c = new_keypair(tmp_path / "pkg", name="shipped")
    raw_b = load_public_key(pub_b).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    keys = trusted_keys([str(pub_a), base64.b64encode(raw_b).decode()], [tmp_path / "pkg"])
    assert set(keys) == {key_id(load_public_key(p)) for p in (pub_a, pub_b, pub_c)}
    with pytest.raises(ValueError):
        trusted_keys(["not a key"])


def test_keys_new_writes_a_private_key_only_its_owner_can_read_and_never_overwrites(tmp_path):
    key, pub = new_keypair(tmp_path)
    assert key.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE" not in pub.read_bytes()
    with pytest.raises(ValueError, match="refusing"):
        new_keypair(tmp_path)


def test_sign_pack_refuses_a_pack_whose_files_do_not_match_and_signs_a_good_one(tmp_path):
    key, pub = new_keypair(tmp_path / "k")
    pack = make_pack(tmp_path / "p", "2.0.0")
    signed = sign_pack(pack, key, expires_in=timedelta(days=1))
    trusted = trusted_keys([str(pub)])
    assert verify_manifest(json.loads((pack / "manifest.json").read_text()), trusted)
    assert datetime.fromisoformat(signed["expires"]) > datetime.now(UTC)
    broken = make_pack(tmp_path / "q", "2.0.0")
    (broken / "labels.txt").write_text("fox\n")
    with pytest.raises(ValueError, match=r"labels\.txt"):
        sign_pack(broken, key, expires_in=timedelta(days=1))
    assert json.loads((broken / "manifest.json").read_text()).get("signature") is None
    shutil.rmtree(broken)


def test_ota_downlink_messages_round_trip_on_their_own_topics():
    from device import protocol

    desired = ro.desired_config("trap-a", 2, {"capture": {"burst_frames": 4}})
    assert protocol.topic_for(desired) == "camtrap/trap-a/down/config"
    assert protocol.decode(protocol.encode(desired)) == desired
    cmd = ro.command("trap-a", "sync-now", "c-1")
    assert protocol.topic_for(cmd) == "camtrap/trap-a/down/command"
    assert protocol.decode(protocol.encode(cmd)) == cmd
    wire = json.loads(protocol.encode(cmd))
    assert wire["commandID"] == "c-1"
    assert datetime.fromisoformat(wire["issuedAt"]).tzinfo is not None
    with pytest.raises(protocol.ProtocolError, match="invalid_fields"):
        protocol.decode(json.dumps({**wire, "surprise": 1}).encode())
