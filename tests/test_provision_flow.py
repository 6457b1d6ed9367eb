"""camtrap-provision, non-interactive, against a temp root, a real registry and a real broker."""

from __future__ import annotations

import io
import stat
import tomllib

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from PIL import Image

from cloud_stub import pki
from cloud_stub.registry.store import RegistryStore
from device.clock import ClockProbe
from device.config import load_settings
from provisioning.system import service_owner
from tests.support.provisioning import HandWaver, recording_runner

# The world and pins fixtures (temp root, mosquitto, registry, mock GPIO).
pytest_plugins = ["tests.support.broker", "tests.support.provisioning"]
pytestmark = pytest.mark.timeout(180)

SERIAL_ID = "pi-10000000abcd1234"


def test_a_blank_pi_becomes_an_enrolled_located_tested_running_trap(world, pins):
    answers = world.answers(config={"vision": {"enabled": True}})
    with HandWaver(pins, 17):
        run = world.provision(answers, "--pir-timeout", "20")
    assert run.code == 0, run.err

    checklist = [line.strip() for line in run.out.splitlines() if line.strip().startswith("[")]
    assert [line.split("]")[0] + "]" for line in checklist] == ["[PASS]"] * 6, checklist
    assert any("sharpness" in line and "brightness" in line for line in checklist)
    assert any("capture pipeline" in line and "classified: no," not in line for line in checklist)

    settings = load_settings(world.config, require_file=True)
    assert settings.device.id == SERIAL_ID
    assert settings.device.deployment_id.startswith(SERIAL_ID + "-")
    assert settings.location.country == "KEN"
    assert (settings.location.latitude, settings.location.longitude) == (-1.2921, 36.8219)
    assert (settings.pir.pin, settings.ir.pin) == (17, 27)

    key = settings.uplink.mqtt.key_file
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    owner = service_owner("camtrap")
    if owner is not None:
        assert (key.stat().st_uid, key.stat().st_gid) == owner
    cert = x509.load_pem_x509_certificate(settings.uplink.mqtt.cert_file.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SERIAL_ID
    assert settings.uplink.mqtt.port == world.broker.port

    assert run.runner.calls[1][:4] == ["nmcli", "connection", "add", "type"]
    assert "correct horse battery" in run.runner.calls[1]
    assert ["systemctl", "enable", "camtrap-agent.service"] in run.runner.calls
    assert run.runner.calls[-1] == ["systemctl", "restart", "camtrap-agent.service"]

    (record,) = RegistryStore(world.registry_root).deployments()
    assert record["deploymentID"] == settings.device.deployment_id
    assert record["cameraID"] == SERIAL_ID
    assert record["deploymentEnd"] is None
    assert (record["cameraHeight"], record["cameraTilt"], record["cameraHeading"]) == (0.6, -5, 270)
    assert (record["featureType"], record["baitUse"], record["countryCode"]) == (
        "trailGame",
        False,
        "KEN",
    )

    label = Image.open(world.root / "var/lib/camtrap/label.png")
    assert label.format == "PNG" and label.width > 100
    assert SERIAL_ID in run.out and "█" in run.out  # summary and terminal QR code


def test_a_rerun_at_the_same_place_changes_nothing(world, pins):
    first = world.provision()
    assert first.code == 0, first.err
    config = world.config.read_bytes()
    key = (world.root / "etc/camtrap/pki/device.key").read_bytes()

    runner = recording_runner()
    runner.replies[("nmcli", "-t")] = runner.replies[("nmcli", "-t")].__class__(
        0, "camtrap-ranger-station\n"
    )
    again = world.provision(world.answers(registration={"method": "keep"}), runner=runner)
    assert again.code == 0, again.err
    assert world.config.read_bytes() == config
    assert (world.root / "etc/camtrap/pki/device.key").read_bytes() == key
    assert "continues (same place)" in again.out
    assert runner.calls[1][:3] == ["nmcli", "connection", "modify"]
    assert len(RegistryStore(world.registry_root).deployments()) == 1


def test_moving_the_trap_ends_its_deployment_and_starts_another(world, pins):
    assert world.provision().code == 0
    old_id = load_settings(world.config).device.deployment_id
    moved = world.answers(
        registration={"method": "keep"},
        deployment={"location_name": "Mara North, tree 15", "latitude": -1.30},
    )
    run = world.provision(moved)
    assert run.code == 0, run.err
    new_id = load_settings(world.config).device.deployment_id
    assert new_id != old_id
    assert f"deployment {old_id} ends now" in run.out

    rows = {r["deploymentID"]: r for r in RegistryStore(world.registry_root).deployments()}
    assert rows[old_id]["deploymentEnd"] is not None
    assert rows[new_id]["deploymentEnd"] is None
    assert rows[new_id]["deploymentStart"] >= rows[old_id]["deploymentEnd"]
    history = (world.root / "var/lib/camtrap/deployments.json").read_text()
    assert old_id in history and new_id in history


def test_a_dry_run_prints_every_change_and_makes_none(world):
    token = world.token()
    answers = world.answers(registration={"token": token})
    run = world.provision(answers, "--dry-run")
    assert run.code == 0, run.err
    assert sorted(p.name for p in world.root.iterdir()) == ["proc"]  # nothing written
    assert "would run: nmcli connection add type wifi ifname '*' con-name" in run.out
    assert "wifi-sec.psk '********'" in run.out and "correct horse battery" not in run.out
    assert f"would write {world.config}" in run.out
    assert "would run: systemctl enable camtrap-agent.service" in run.out
    assert [c for c in run.runner.calls if c[0] != "nmcli" or c[1] != "-t"] == []
    # The token was not spent: a real run can still use it.
    assert world.provision(answers).code == 0


def test_without_a_pi_serial_the_device_id_is_a_uuid_kept_across_runs(world, pins):
    (world.root / "proc/cpuinfo").write_text("processor\t: 0\nmodel name\t: x86\n")
    assert world.provision().code == 0
    kept = (world.root / "var/lib/camtrap/device-id").read_text().strip()
    assert len(kept) == 36 and load_settings(world.config).device.id == kept
    assert world.provision(world.answers(registration={"method": "keep"})).code == 0
    assert load_settings(world.config).device.id == kept


def test_an_unsynchronised_clock_is_set_by_hand_and_marked_manual(world, pins):
    run = world.provision(None, "--time", "2025-06-01 14:30")
    assert run.code == 0, run.err
    # Nairobi is UTC+3: the clock is set in UTC.
    assert ["date", "--utc", "--set", "2025-06-01 11:30:00"] in run.runner.calls
    settings = load_settings(world.config)
    assert settings.clock.manual_marker.exists()
    assert ClockProbe(settings.clock).probe().source == "manual"


def test_certificates_brought_on_a_usb_stick_are_imported(world, pins, tmp_path):
    from provisioning.cli import main

    usb = tmp_path / "usb"
    usb.mkdir()
    assert main(["--root", str(world.root), "--export-csr", str(usb)], out=io.StringIO()) == 0
    csr = (usb / f"{SERIAL_ID}.csr").read_bytes()
    # In the office: sign with the fleet CA, copy the certificate and the CA back.
    ca = pki.load_ca(world.broker.pki_dir)
    (usb / f"{SERIAL_ID}.crt").write_bytes(pki.sign_csr(ca, csr, SERIAL_ID))
    (usb / "ca.crt").write_bytes(world.broker.ca_file.read_bytes())

    answers = world.answers(
        registration={"method": "import", "import_dir": str(usb)},
        broker={"host": "127.0.0.1", "port": world.broker.port},
    )
    del answers["registration"]["token"], answers["registration"]["url"]
    run = world.provision(answers)
    assert run.code == 0, run.err
    assert "[PASS] broker connection" in run.out
    data = tomllib.loads(world.config.read_text())
    assert data["uplink"]["mqtt"]["port"] == world.broker.port
    assert not list(usb.glob("*.key")), "the private key never left the device"


def test_a_broker_password_goes_to_a_0600_secrets_file_not_the_config(world, pins):
    answers = world.answers(broker={"username": "trap", "password": "s3cret-pass"})
    run = world.provision(answers, "--accept-failures")
    assert run.code == 0, run.err
    secrets = world.root / "etc/camtrap/secrets.toml"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert "s3cret-pass" not in world.config.read_text()
    settings = load_settings(world.config)
    assert settings.uplink.mqtt.password.get_secret_value() == "s3cret-pass"


def test_print_commands_writes_files_but_leaves_the_hosts_services_alone(world, pins):
    run = world.provision(None, "--print-commands")
    assert run.code == 0, run.err
    assert run.runner.calls == []
    assert "not run (--print-commands): systemctl restart camtrap-agent.service" in run.out
    assert load_settings(world.config).device.id == SERIAL_ID
