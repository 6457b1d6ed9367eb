"""``camtrap-cloud``: the ingest command against a real broker, and the fleet CA commands."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from cloud_stub import pki
from device import protocol
from device.protocol import Telemetry
from tests.support.uplink import collect_until, completed, device_link, query

# Fixtures (real services) from tests/support, whatever conftest.py lists.
pytest_plugins = ["tests.support.broker"]
pytestmark = pytest.mark.timeout(60)


def test_ingest_command_stores_acks_and_reports_counters_on_sigterm(broker, tmp_path):
    root = tmp_path / "cloud"
    proc = subprocess.Popen(
        broker.ingest_command(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ingest ready"
        link = device_link(broker, "trap-01")
        link.connect(timeout=10)
        try:
            link.send(Telemetry(device_id="trap-01", item_id="tel:1", sent_at=protocol.utc_now()))
            link.client.publish(protocol.up_topic("trap-01", "meta"), b"garbage", qos=1)
            link.send(Telemetry(device_id="trap-01", item_id="tel:2", sent_at=protocol.utc_now()))
            assert collect_until(link, completed({"tel:1", "tel:2"}))
        finally:
            link.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["counters"]["stored.telemetry"] == 2
    assert summary["counters"]["rejected.malformed"] == 1
    assert "rejected message on camtrap/trap-01/up/meta: malformed" in err
    assert query(root, "SELECT count(*) FROM telemetry") == [(2,)]


def test_ingest_command_needs_a_source(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cloud_stub.cli", "ingest", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--mqtt-host" in result.stderr


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (["--media", "s3://bucket"], "s3://bucket"),
        (["--db", "mysql://user@host/db"], "postgresql://"),
    ],
)
def test_ingest_refuses_a_media_or_db_location_it_cannot_use_in_one_line(tmp_path, option, said):
    command = [sys.executable, "-m", "cloud_stub.cli", "ingest", "--root", str(tmp_path)]
    command += ["--pubsub-subscription", "projects/p/subscriptions/s", *option]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert said in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_ca_signs_a_device_csr_only_for_the_device_it_names(tmp_path):
    ca_dir = tmp_path / "ca"
    run = [sys.executable, "-m", "cloud_stub.cli", "ca"]
    subprocess.run([*run, "init", str(ca_dir)], check=True, capture_output=True, timeout=30)
    assert (ca_dir / "ca.key").stat().st_mode & 0o077 == 0, "the CA key is private"

    key = pki.new_key()
    csr = tmp_path / "trap-01.csr"
    csr.write_bytes(pki.make_csr("trap-01", key))
    good = subprocess.run(
        [*run, "sign", str(ca_dir), str(csr), "trap-01", str(tmp_path / "trap-01.crt")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert good.returncode == 0, good.stderr
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((tmp_path / "trap-01.crt").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=trap-01"
    assert cert.issuer == pki.load_ca(ca_dir).cert.subject

    bad = subprocess.run(
        [*run, "sign", str(ca_dir), str(csr), "trap-02", str(tmp_path / "x.crt")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 1
    assert "expected 'trap-02'" in bad.stderr
    again = subprocess.run([*run, "init", str(ca_dir)], capture_output=True, text=True, timeout=30)
    assert again.returncode == 1 and "refusing to replace" in again.stderr
