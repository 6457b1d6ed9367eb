"""A real mosquitto for tests: the runtime launcher in ``cloud_stub/broker.py`` as fixtures.

Each test broker gets its own port (reserved through tests.support.ports), fleet CA, server
and client certificates and the product's per-device ACL (see ``cloud_stub.broker``);
``kill``/``restart`` fake a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud_stub.broker import ACL, INGEST_USER, MOSQUITTO, MOSQUITTO_PASSWD, Broker
from tests.support.ports import check_config_ports, free_port

__all__ = ["ACL", "INGEST_USER", "MOSQUITTO", "MOSQUITTO_PASSWD", "Broker", "free_port"]


@pytest.fixture
def broker_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Broker]]:
    """``make(max_packet_size=None, passwords=None)`` -> a started Broker, stopped afterwards."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    started: list[Broker] = []

    def make(max_packet_size: int | None = None, passwords: dict[str, str] | None = None) -> Broker:
        broker = Broker(tmp_path_factory.mktemp("broker"), free_port(), max_packet_size, passwords)
        # Broker picks its password listener's port itself; the guard recorded its bind.
        check_config_ports(
            {"port": broker.port, "password_port": broker.password_port}, "test broker"
        )
        broker.start()
        started.append(broker)
        return broker

    yield make
    for broker in started:
        broker.stop()


@pytest.fixture
def broker(broker_factory: Callable[..., Broker]) -> Broker:
    return broker_factory()
