"""When the cloud cannot be reached, the MQTT link and ``camtrap sync`` name host, port and why.

Each reason against a real socket or a real mosquitto: a reserved port nobody listens on
(refused), a listening socket that never answers (timed out), a broker whose certificate comes
from another CA (TLS verification failed), a client certificate from another CA and a wrong
password (not authorised), and a name under ``.invalid`` (name not resolved, RFC 6761).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from device.uplink.mqtt import MqttTransport
from device.uplink.transport import TransportError
from tests.support.broker import Broker, free_port
from tests.support.trap_db import mqtt_trap_settings, open_store, queue_captures, write_config
from tests.support.uplink import device_link

pytest_plugins = ["tests.support.broker"]
pytestmark = pytest.mark.timeout(60)

DEVICE = "trap-offline-01"


def failed_connect(link: MqttTransport, timeout: float = 2.0) -> str:
    try:
        with pytest.raises(TransportError) as err:
            link.connect(timeout=timeout)
    finally:
        link.close()
    assert link.offline_reason is not None
    assert str(err.value).endswith(link.offline_reason.split(": ", 1)[1])
    return link.offline_reason


def link_to(host: str, port: int, broker: Broker, **kwargs) -> MqttTransport:  # type: ignore[no-untyped-def]
    cert, key = broker.client_cert(DEVICE)
    return MqttTransport(
        DEVICE,
        host=host,
        port=port,
        ca_file=broker.ca_file,
        cert_file=cert,
        key_file=key,
        socket_timeout_s=0.5,
        **kwargs,
    )


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A socket that accepts TCP connections (kernel backlog) and never says a word."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_refused_names_host_port_and_reason(broker):
    port = free_port()
    reason = failed_connect(link_to("127.0.0.1", port, broker))
    assert reason == f"MQTT broker 127.0.0.1:{port}: refused"


def test_timed_out_when_nothing_answers(broker, silent_port):
    reason = failed_connect(link_to("127.0.0.1", silent_port, broker), timeout=1.5)
    assert reason == f"MQTT broker 127.0.0.1:{silent_port}: timed out"


def test_name_not_resolved(broker):
    port = free_port()
    reason = failed_connect(link_to("broker.camtrap.invalid", port, broker))
    assert reason == f"MQTT broker broker.camtrap.invalid:{port}: name not resolved"


def test_tls_verification_failed_for_a_broker_of_another_ca(broker_factory):
    ours, theirs = broker_factory(), broker_factory()
    reason = failed_connect(link_to("127.0.0.1", theirs.port, ours))
    assert reason.startswith(f"MQTT broker 127.0.0.1:{theirs.port}: TLS verification failed")


def test_not_authorised_with_a_client_certificate_of_another_ca(broker_factory):
    ours, theirs = broker_factory(), broker_factory()
    cert, key = theirs.client_cert(DEVICE)  # signed by a CA our broker does not trust
    link = MqttTransport(
        DEVICE,
        host="127.0.0.1",
        port=ours.port,
        ca_file=ours.ca_file,
        cert_file=cert,
        key_file=key,
        socket_timeout_s=0.5,
    )
    reason = failed_connect(link)
    assert reason.startswith(f"MQTT broker 127.0.0.1:{ours.port}: not authorised"), reason


def test_not_authorised_with_a_wrong_password(broker_factory):
    broker = broker_factory(passwords={DEVICE: "right"})
    link = MqttTransport(
        DEVICE,
        host="127.0.0.1",
        port=broker.password_port,
        ca_file=broker.ca_file,
        username=DEVICE,
        password="wrong",
        socket_timeout_s=0.5,
    )
    reason = failed_connect(link, timeout=5.0)
    assert reason.startswith(f"MQTT broker 127.0.0.1:{broker.password_port}: not authorised")


def test_reason_clears_once_connected(broker):
    link = device_link(broker, DEVICE)
    try:
        link.connect(timeout=10)
        assert link.offline_reason is None
    finally:
        link.close()


def test_sync_progress_and_summary_name_the_broker_and_the_reason(broker, tmp_path):
    port = free_port()
    settings = mqtt_trap_settings(tmp_path / "trap", broker, mqtt={"port": port})
    store = open_store(settings)
    queue_captures(store, 1, frames=1)
    store.close()
    config = write_config(settings, tmp_path / "camtrap.toml")
    cmd = [sys.executable, "-m", "device.cli", "--config", str(config)]
    result = subprocess.run(
        [*cmd, "sync", "--plain", "--timeout", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    where = f"MQTT broker 127.0.0.1:{port}: refused"
    progress = [line for line in result.stdout.splitlines() if line.startswith("sync progress")]
    assert progress and all(where in line for line in progress), result.stdout
    assert "(offline, retrying)" not in result.stdout
    assert f"sync: offline: {where}" in result.stdout
