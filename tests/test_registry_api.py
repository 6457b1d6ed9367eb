"""The registry over real HTTPS: one-time tokens, CSR signing, deployment records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from cloud_stub import pki
from cloud_stub.registry.server import BrokerInfo, build_server
from cloud_stub.registry.store import RegistryStore
from provisioning import registry_client
from provisioning.registry_client import RegistryRefused
from tests.support.ports import adopt_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def registry(tmp_path: Path):
    ca = pki.create_ca(tmp_path / "ca")
    server = build_server(tmp_path / "reg", tmp_path / "ca", BrokerInfo("broker.example", 8883))
    server.start()
    yield server, f"https://127.0.0.1:{server.port}", ca, tmp_path
    server.stop()


def _csr(device_id: str, directory: Path) -> tuple[bytes, Path]:
    key = pki.new_key()
    key_path = directory / f"{device_id}.key"
    key_path.write_bytes(pki.key_pem(key))
    return pki.make_csr(device_id, key), key_path


def test_a_token_enrols_one_device_once(registry):
    _server, url, ca, tmp = registry
    (token,) = RegistryStore(tmp / "reg").new_tokens(1)
    csr, _ = _csr("trap-1", tmp)
    reply = registry_client.enrol(url, ca.cert_path, token, "trap-1", csr)
    cert = x509.load_pem_x509_certificate(reply["certificate"].encode())
    assert cert.subject.rfc4514_string() == "CN=trap-1"
    assert reply["broker"] == {"host": "broker.example", "port": 8883, "tls": True}
    with pytest.raises(RegistryRefused, match=r"\(403\): enrolment token was already used"):
        registry_client.enrol(url, ca.cert_path, token, "trap-2", _csr("trap-2", tmp)[0])
    with pytest.raises(RegistryRefused, match=r"\(403\): unknown enrolment token"):
        registry_client.enrol(url, ca.cert_path, "guess", "trap-3", _csr("trap-3", tmp)[0])
    assert [d["device_id"] for d in RegistryStore(tmp / "reg").devices()] == ["trap-1"]


def test_a_bad_csr_is_refused_without_spending_the_token(registry):
    _server, url, ca, tmp = registry
    (token,) = RegistryStore(tmp / "reg").new_tokens(1)
    wrong_cn, _ = _csr("someone-else", tmp)
    with pytest.raises(RegistryRefused, match=r"\(400\): CSR CN"):
        registry_client.enrol(url, ca.cert_path, token, "trap-1", wrong_cn)
    registry_client.enrol(url, ca.cert_path, token, "trap-1", _csr("trap-1", tmp)[0])


def test_deployment_records_need_the_devices_own_certificate(registry):
    _server, url, ca, tmp = registry
    cert, key = pki.issue_client_cert(ca, tmp / "clients", "trap-1")
    record = {
        "deploymentID": "trap-1-a",
        "cameraID": "trap-1",
        "latitude": -1.3,
        "longitude": 36.8,
        "deploymentStart": "2025-06-01T11:30:00+00:00",
        "deploymentEnd": None,
        "featureType": "trailGame",
        "baitUse": False,
        "countryCode": "KEN",
    }
    with pytest.raises(RegistryRefused, match=r"\(401\)"):
        registry_client.call("PUT", f"{url}/v1/deployments/trap-1-a", record, ca_file=ca.cert_path)
    other_cert, other_key = pki.issue_client_cert(ca, tmp / "clients", "trap-2")
    with pytest.raises(RegistryRefused, match=r"\(403\): cameraID must be the calling device"):
        registry_client.put_deployment(url, ca.cert_path, other_cert, other_key, record)
    with pytest.raises(RegistryRefused, match=r"\(400\): latitude"):
        registry_client.put_deployment(url, ca.cert_path, cert, key, {**record, "latitude": 95})
    registry_client.put_deployment(url, ca.cert_path, cert, key, record)
    registry_client.put_deployment(url, ca.cert_path, cert, key, record)  # resending is fine

    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "cloud_stub.cli",
            "registry",
            "deployments",
            "--root",
            str(tmp / "reg"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    (row,) = json.loads(listed.stdout)
    assert (row["deploymentID"], row["featureType"], row["baitUse"]) == (
        "trap-1-a",
        "trailGame",
        False,
    )


def test_the_cli_mints_tokens_and_serves_https(tmp_path):
    pki.create_ca(tmp_path / "ca")
    minted = subprocess.run(
        [
            sys.executable,
            "-m",
            "cloud_stub.cli",
            "registry",
            "token",
            "new",
            "--root",
            str(tmp_path / "reg"),
            "--count",
            "3",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    tokens = minted.stdout.split()
    assert len(set(tokens)) == 3
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloud_stub.cli",
            "registry",
            "serve",
            "--root",
            str(tmp_path / "reg"),
            "--ca-dir",
            str(tmp_path / "ca"),
            "--port",
            "0",
            "--broker-host",
            "127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("registry ready https://localhost:")
        # The server chose this port (--port 0) and told us: ours to connect to.
        port = adopt_port(int(line.rsplit(":", 1)[1]))
        import ssl
        import urllib.request

        context = ssl.create_default_context(cafile=str(tmp_path / "ca/ca.crt"))
        with urllib.request.urlopen(
            f"https://localhost:{port}/v1/health", context=context, timeout=10
        ) as response:
            assert json.loads(response.read()) == {"ok": True}
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
