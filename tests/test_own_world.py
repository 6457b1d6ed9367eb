"""Tests touch only their own world (issue 12, part 10): the guard, the helper, the settings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support import ports
from tests.support.ports import (
    DEFAULT_PORTS,
    REGISTRY,
    ForeignPortError,
    adopt_port,
    agent_launch_problems,
    check_config_ports,
    check_connection,
    reserve_port,
)
from tests.support.trap_db import write_config
from tests.support.world import trap_settings

REPO = Path(__file__).resolve().parent.parent


def _unreserved_port() -> int:
    """A port nobody reserved: bound outside the guard's bookkeeping, then let go."""
    while True:  # the kernel may offer a port this session already reserved: ask again
        sock = socket.socket()
        ports._real_bind(sock, ("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        if not REGISTRY.reserved(port):
            return port


def test_the_guard_refuses_a_port_the_test_did_not_reserve():
    port = _unreserved_port()
    with pytest.raises(ForeignPortError, match=rf"127\.0\.0\.1:{port} .*did not reserve"):
        check_connection("127.0.0.1", port)
    with pytest.raises(ForeignPortError), socket.create_connection(("127.0.0.1", port), 1):
        pass
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    refused = REGISTRY.take_violations()  # taken, so this test itself passes
    assert len(refused) == 3
    assert all(__name__.split(".")[-1] in line and f":{port}" in line for line in refused)


@pytest.mark.parametrize("port", sorted(DEFAULT_PORTS))
def test_default_ports_are_refused_even_when_reserved(port):
    with pytest.raises(ValueError):
        adopt_port(port)
    REGISTRY.record(port)  # as if some helper had handed it out
    try:
        with pytest.raises(ForeignPortError, match="default service port"):
            check_connection("localhost", port)
    finally:
        REGISTRY.per_test.discard(port)
        REGISTRY.long_lived.discard(port)
        REGISTRY.take_violations()


@pytest.mark.parametrize("host", ["192.0.2.1", "example.org", "10.0.0.1", "::ffff:192.0.2.1"])
def test_addresses_off_loopback_are_refused(host):
    port = reserve_port()
    with pytest.raises(ForeignPortError, match="not a loopback address"):
        check_connection(host, port)
    REGISTRY.take_violations()


def test_a_reserved_port_and_an_in_process_server_are_reachable():
    port = reserve_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # Reserved but nobody listens: an ordinary refusal, not the guard's.
    with pytest.raises(ConnectionRefusedError) as refused:
        socket.create_connection(("127.0.0.1", port), timeout=2)
    assert not isinstance(refused.value, ForeignPortError)
    # A server of this process on port 0: its bind is recorded.
    with socket.create_server(("127.0.0.1", 0)) as server:
        socket.create_connection(server.getsockname()[:2], timeout=2).close()
    assert REGISTRY.take_violations() == []


def test_a_connection_from_a_background_thread_fails_the_test_at_teardown(pytester, monkeypatch):
    pytester.makeconftest('pytest_plugins = ["tests.support.ports"]\n')
    pytester.makepyfile(
        test_foreign="""
        import socket, threading
        from tests.support import ports

        def _free():
            s = socket.socket()
            ports._real_bind(s, ("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            return port

        def test_connects_to_a_stranger():
            port = _free()
            def go():
                try:
                    socket.create_connection(("127.0.0.1", port), 1)
                except OSError:
                    pass  # a library swallowing the error must not hide it
            t = threading.Thread(target=go, name="paho-like")
            t.start(); t.join()

        def test_connects_to_the_default_mqtt_port():
            try:
                socket.create_connection(("127.0.0.1", 8883), 1)
            except OSError:
                pass

        def test_stays_home():
            port = ports.reserve_port()
            with socket.create_server(("127.0.0.1", port)):
                socket.create_connection(("127.0.0.1", port), 1).close()
        """
    )
    env_path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", env_path)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=2)
    out = result.stdout.str()
    assert "test_foreign.py::test_connects_to_a_stranger: connection to 127.0.0.1:" in out
    assert "did not reserve" in out and "paho-like" in out
    assert "test_connects_to_the_default_mqtt_port: connection to 127.0.0.1:8883" in out


def test_trap_settings_reach_no_default_port_and_keep_ota_off(tmp_path):
    settings = trap_settings(tmp_path / "trap")
    assert settings.uplink.transport == "none"
    assert settings.uplink.mqtt.host == "127.0.0.1"
    assert settings.uplink.mqtt.port not in DEFAULT_PORTS
    assert REGISTRY.reserved(settings.uplink.mqtt.port)
    assert settings.ota.enabled is False
    # Written for a subprocess agent, the file carries only this test's ports.
    write_config(settings, tmp_path / "camtrap.toml")
    # A test that switches the uplink on without naming a broker still reaches nothing foreign.
    on = trap_settings(tmp_path / "on", uplink={"transport": "mqtt"})
    assert REGISTRY.reserved(on.uplink.mqtt.port) and on.uplink.mqtt.port not in DEFAULT_PORTS


def test_trap_settings_turn_ota_on_only_when_asked(tmp_path):
    assert trap_settings(tmp_path / "a", ota={"trial_inferences": 3}).ota.enabled is True
    assert trap_settings(tmp_path / "b", ota={"enabled": False}).ota.enabled is False


def test_config_data_with_a_foreign_port_is_refused():
    with pytest.raises(pytest.fail.Exception, match=r"uplink\.mqtt\.port = 8883"):
        check_config_ports({"uplink": {"mqtt": {"host": "localhost", "port": 8883}}})
    stranger = _unreserved_port()
    with pytest.raises(pytest.fail.Exception, match="did not reserve"):
        check_config_ports({"registration": {"url": f"https://127.0.0.1:{stranger}/v1"}})
    with pytest.raises(pytest.fail.Exception, match="default service port"):
        check_config_ports({"env": ["PUBSUB_EMULATOR_HOST=localhost:8085"]})
    own = reserve_port()
    check_config_ports({"uplink": {"mqtt": {"port": own}}, "url": f"https://localhost:{own}/"})


def _agent(config: Path, command: str = "run") -> list[str]:
    return [sys.executable, "-m", "device.cli", "--config", str(config), command]


def test_an_agent_subprocess_must_get_a_world_of_its_own(tmp_path):
    bare = tmp_path / "bare.toml"
    bare.write_text("[camera]\nbackend = 'synthetic'\n")  # uplink left at its default
    env = {"PATH": os.environ.get("PATH", "")}
    (problem,) = agent_launch_problems(_agent(bare, "simulate"), env)
    assert "localhost:8883" in problem and "default service port" in problem
    off = tmp_path / "off.toml"
    off.write_text("[uplink]\ntransport = 'none'\n")
    assert agent_launch_problems(_agent(off), env) == []
    # ... unless its environment switches the link back on (the agent lets env win).
    on = {**env, "CAMTRAP_UPLINK__TRANSPORT": "mqtt"}
    assert agent_launch_problems(_agent(off, "sync"), on)
    pubsub = {**env, "CAMTRAP_UPLINK__TRANSPORT": "pubsub"}
    assert "PUBSUB_EMULATOR_HOST" in agent_launch_problems(_agent(off), pubsub)[0]
    emulator = {**pubsub, "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{reserve_port()}"}
    assert agent_launch_problems(_agent(off), emulator) == []
    # The file fixtures write (tests.support.trap_db.write_config) carries only reserved ports.
    ours = write_config(trap_settings(tmp_path / "trap", uplink={"transport": "mqtt"}), bare)
    assert agent_launch_problems(_agent(ours), env) == []
    # Commands that open no link, and configs the agent would refuse, are not its business.
    assert agent_launch_problems(_agent(bare, "status"), env) == []
    assert agent_launch_problems(_agent(tmp_path / "missing.toml"), env) == []


def test_starting_such_an_agent_fails_the_test(tmp_path):
    bare = tmp_path / "bare.toml"
    bare.write_text("[capture]\nburst_frames = 2\n")
    # "python -c pass" ignores the rest: the guard sees an agent launch, nothing runs.
    args = [sys.executable, "-c", "pass", "-m", "device.cli", "--config", str(bare), "run"]
    subprocess.run(args, check=True)
    (problem,) = REGISTRY.take_violations()
    assert problem.startswith("tests/test_own_world.py::test_starting_such_an_agent_fails")
    assert "uplink to localhost:8883" in problem


def test_the_guard_is_on_for_every_test():
    assert socket.socket.connect is ports._guarded_connect
    assert socket.socket.connect_ex is ports._guarded_connect_ex
    assert subprocess.Popen.__init__ is ports._guarded_popen_init
    assert threading.current_thread() is threading.main_thread()
