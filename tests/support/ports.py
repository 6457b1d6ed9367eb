"""Tests touch only their own world: the one port helper, and a guard on every connection.

``reserve_port()`` (alias ``free_port``) is the only way tests pick a port; every port it hands
out, and every port a socket of this process binds (in-process servers bind port 0), goes into a
registry. While pytest runs, ``socket.socket.connect``/``connect_ex`` (which
``socket.create_connection``, ``ssl``, ``http.client``, ``urllib``, paho and asyncio all use) are
checked against it: a connection to an unreserved port, to a default port (1883, 8883, 5432, 8085)
or to any address off loopback is refused and fails the test that made it, naming test, host and
port. Ports reserved while a test's own fixtures or body run are dropped when the test ends; ports
reserved while a session/module/class fixture is set up live as long as the session.

Each process keeps its own registry, so a port is also claimed across processes before it is
handed out: pytest-xdist workers, and other pytest sessions on the machine, each hold a lock on
one byte of a shared lock file per port they reserved (``PortClaims``). The kernel drops a
process's locks when it exits, so a crashed worker leaves no stale claim behind.

What cannot be wrapped in-process, and how it is kept in its world instead:
- subprocesses (mosquitto, the agent, ``cloud_stub`` servers, gcloud's JVM): they only get ports
  from ``reserve_port``; ``check_config_ports`` refuses config data carrying any other port, a
  port a started tool reports (``--port 0``) is taken on with ``adopt_port``, and every agent
  started with ``run``/``simulate``/``sync`` has its effective uplink checked at ``Popen``
  (``agent_launch_problems``): off, or a reserved loopback port;
- gRPC (google-cloud-pubsub) opens sockets in C-core: it is only ever pointed at the emulator's
  reserved port through ``PUBSUB_EMULATOR_HOST`` (the ``pubsub_env`` fixture);
- Playwright talks to its driver, and the driver to Chromium, over pipes (no DevTools port);
  Chromium only loads ``camtrap-cloud serve`` (port adopted from its banner) and in-process
  servers, and ``--host-resolver-rules`` (tests.support.browser) stops it resolving any other
  name. No port exemption is needed for them.
The one exemption: names under ``.invalid`` (RFC 6761 - they never resolve, so reach no one),
used to test the agent's "name not resolved" path. The outer shell's ``CAMTRAP_*`` and
``PUBSUB_EMULATOR_HOST`` are removed at start-up, so no test inherits a link it did not make.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import re
import socket
import subprocess
import tempfile
import threading
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DEFAULT_PORTS = frozenset({1883, 8883, 5432, 8085})  # MQTT, MQTT/TLS, PostgreSQL, Pub/Sub emulator
INET = (socket.AF_INET, socket.AF_INET6)
# Where the outer shell could reach past a test's world: the agent reads CAMTRAP_* over its
# config file, and the Pub/Sub clients follow PUBSUB_EMULATOR_HOST. Tests set these themselves.
FOREIGN_ENV = re.compile(r"^(CAMTRAP_.*|PUBSUB_EMULATOR_HOST)$")


class ForeignPortError(ConnectionRefusedError):
    """A connection the guard refused: the port is not this test's."""


class PortClaims:
    """Ports this process reserved, claimed against every other process of the same user.

    A claim is a POSIX record lock on byte ``port`` of one lock file: another process holding it
    means the port is that process's until it lets go or exits. Record locks belong to the
    process (its threads share them) and vanish with it; closing any descriptor of the file
    would drop them all, so the one descriptor stays open for the life of the process.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._held: set[int] = set()
        self._lock = threading.Lock()

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def claim(self, port: int) -> bool:
        """True if ``port`` is now this process's; False if another process holds it."""
        with self._lock:
            try:
                fcntl.lockf(self._descriptor(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
            except (BlockingIOError, PermissionError):  # EAGAIN / EACCES: held elsewhere
                return False
            self._held.add(port)
            return True

    def release(self, ports: set[int]) -> None:
        with self._lock:
            for port in ports & self._held:
                fcntl.lockf(self._descriptor(), fcntl.LOCK_UN, 1, port)
            self._held -= ports

    def held(self, port: int) -> bool:
        with self._lock:
            return port in self._held


CLAIMS = PortClaims(Path(tempfile.gettempdir()) / f"camtrap-test-ports-{os.getuid()}.lock")


@dataclass
class _Registry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    long_lived: set[int] = field(default_factory=set)
    per_test: set[int] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)  # refused between tests: the session reports
    current: str = "(no test: collection or session setup)"
    long_lived_depth: int = 0  # > 0 while a session/package/module/class fixture sets up

    def record(self, port: int) -> None:
        with self.lock:
            (self.long_lived if self.long_lived_depth else self.per_test).add(port)

    def reserved(self, port: int) -> bool:
        with self.lock:
            return port in self.long_lived or port in self.per_test

    def end_test(self) -> None:
        with self.lock:
            ended, self.per_test = self.per_test - self.long_lived, set()
        CLAIMS.release(ended)

    def take_violations(self) -> list[str]:
        with self.lock:
            taken, self.violations = self.violations, []
        return taken


REGISTRY = _Registry()
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_bind = socket.socket.bind


RESERVE_ATTEMPTS = 200


def _kernel_offer() -> int:
    """A loopback port free this moment: the kernel's pick for a bind to port 0, let go again."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        _real_bind(sock, ("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reserve_port() -> int:
    """A free loopback TCP port, recorded as this test's (or the session's, in a wide fixture).

    The kernel may offer a port again as soon as it is let go, to this process or another, while
    its first owner has not bound it yet: a port this process reserved already, or one another
    process claimed, is passed over.
    """
    for _ in range(RESERVE_ATTEMPTS):
        port = _kernel_offer()
        if REGISTRY.reserved(port) or not CLAIMS.claim(port):
            continue
        REGISTRY.record(port)
        return port
    raise RuntimeError(f"no free loopback port in {RESERVE_ATTEMPTS} tries")


free_port = reserve_port


def adopt_port(port: int) -> int:
    """Take on a port a tool we started chose and reported (a server run with ``--port 0``)."""
    if port in DEFAULT_PORTS:
        raise ValueError(f"port {port} is a default port; a started tool must not use it")
    REGISTRY.record(port)
    return port


def _is_local(host: str) -> bool:
    if host in ("localhost", "", "localhost.localdomain"):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # a name: resolving it would already leave our world
    mapped = getattr(ip, "ipv4_mapped", None)
    ip = mapped or ip
    return ip.is_loopback or ip.is_unspecified


def refusal(host: str, port: int) -> str | None:
    """Why a connection to ``host:port`` is not this test's, or None when it is."""
    if host.rstrip(".").lower().endswith(".invalid"):
        # Exempt: RFC 6761 names that can never resolve, so nothing is reached; tests use them
        # for the product's "name not resolved" path (seen only in subprocess configs, as an
        # in-process connection to a name fails in getaddrinfo before any connect).
        return None
    if not _is_local(host):
        return "not a loopback address (tests have no network)"
    if port in DEFAULT_PORTS:
        return "a default service port: something outside the test may listen there"
    if not REGISTRY.reserved(port):
        return "a port this test did not reserve (use tests.support.ports.reserve_port)"
    return None


def check_connection(host: str, port: int) -> None:
    """Raise ForeignPortError (and record a violation) unless ``host:port`` is this test's."""
    why = refusal(host, port)
    if why is None:
        return
    message = (
        f"{REGISTRY.current}: connection to {host}:{port} refused by the own-world guard: "
        f"{why} [thread {threading.current_thread().name}]"
    )
    with REGISTRY.lock:
        REGISTRY.violations.append(message)
    raise ForeignPortError(errno.ECONNREFUSED, message)


def _target(sock: socket.socket, address: Any) -> tuple[str, int] | None:
    if sock.family not in INET or not isinstance(address, tuple) or len(address) < 2:
        return None
    host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
    return host, int(address[1])


def _guarded_connect(self: socket.socket, address: Any) -> None:
    target = _target(self, address)
    if target is not None:
        check_connection(*target)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    target = _target(self, address)
    if target is not None:
        try:
            check_connection(*target)
        except ForeignPortError:
            return errno.ECONNREFUSED
    return _real_connect_ex(self, address)


def _recording_bind(self: socket.socket, address: Any) -> None:
    _real_bind(self, address)
    if self.family in INET:
        REGISTRY.record(self.getsockname()[1])


# -- agents started as subprocesses ---------------------------------------------------------

AGENT_COMMANDS = frozenset({"run", "simulate", "sync"})  # the camtrap commands that open a link
_real_popen_init = subprocess.Popen.__init__


def _agent_argv(args: Any) -> list[str] | None:
    """The camtrap arguments after the program, if ``args`` starts the device CLI."""
    if isinstance(args, str | bytes | os.PathLike):
        return None  # a shell line or a bare program: not how tests start the agent
    argv = [os.fsdecode(a) if isinstance(a, bytes | os.PathLike) else str(a) for a in args]
    for i, arg in enumerate(argv):
        if arg == "device.cli" and i and argv[i - 1] == "-m":
            return argv[i + 1 :]
        if i == 0 and Path(arg).name == "camtrap":
            return argv[1:]
    return None


def agent_launch_problems(args: Any, env: Mapping[str, str] | None) -> list[str]:
    """Why an agent started with ``args``/``env`` would reach outside the test's world.

    The subprocess cannot be wrapped, so its configuration is checked instead: the uplink it
    would open (file, then CAMTRAP_* of its environment, as the agent reads them) must be off
    or point at a port this test reserved. A config the agent would refuse is not checked.
    """
    argv = _agent_argv(args)
    if argv is None or not AGENT_COMMANDS & set(argv):
        return []
    env = dict(os.environ if env is None else env)
    config: str | None = env.get("CAMTRAP_CONFIG")
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            config = argv[i + 1]
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
    from device.config import DEFAULT_CONFIG_PATH, Settings

    path = Path(config) if config else DEFAULT_CONFIG_PATH
    try:
        if config and not path.exists():
            return []  # a config named but missing: the agent refuses to start
        data = tomllib.loads(path.read_text()) if path.exists() else {}
        uplink = Settings(**data).uplink
    except Exception:  # unreadable or invalid: the agent exits before any link
        return []
    transport = env.get("CAMTRAP_UPLINK__TRANSPORT", uplink.transport)
    what = f"agent {' '.join(argv)} (config {path})"
    if transport == "mqtt":
        host = env.get("CAMTRAP_UPLINK__MQTT__HOST", uplink.mqtt.host)
        port = int(env.get("CAMTRAP_UPLINK__MQTT__PORT", uplink.mqtt.port))
        why = refusal(host, port)
        return [f"{what}: uplink to {host}:{port}: {why}"] if why else []
    if transport == "pubsub":
        emulator = env.get("PUBSUB_EMULATOR_HOST")
        if not emulator:
            return [f"{what}: Pub/Sub uplink without PUBSUB_EMULATOR_HOST reaches Google"]
        host, _, port_text = emulator.rpartition(":")
        why = refusal(host.strip("[]"), int(port_text or 0))
        return [f"{what}: Pub/Sub emulator {emulator}: {why}"] if why else []
    return []


def _guarded_popen_init(self: subprocess.Popen[Any], args: Any, *rest: Any, **kw: Any) -> None:
    try:
        problems = agent_launch_problems(args, kw.get("env"))
    except Exception:  # the check must never be what breaks a launch
        problems = []
    for problem in problems:
        with REGISTRY.lock:
            REGISTRY.violations.append(f"{REGISTRY.current}: {problem}")
    _real_popen_init(self, args, *rest, **kw)


def install() -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.socket.bind = _recording_bind  # type: ignore[method-assign]
    subprocess.Popen.__init__ = _guarded_popen_init  # type: ignore[method-assign]


def uninstall() -> None:
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]
    socket.socket.bind = _real_bind  # type: ignore[method-assign]
    subprocess.Popen.__init__ = _real_popen_init  # type: ignore[method-assign]


# host:port at the start of a string, after "//", "@" or "=": URLs, "127.0.0.1:8085", VAR=host:port
_HOST_PORT = re.compile(r"(?:^|//|@|=)(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})(?=$|[/?#])")


def check_config_ports(data: Any, where: str = "config") -> None:
    """Fail if config data for a subprocess names a port that is not this test's.

    Every int under a key ending in ``port`` and every ``host:port`` in a string (URLs,
    ``PUBSUB_EMULATOR_HOST``) must be reserved and must not be a default port.
    """
    problems: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                sub = f"{path}.{key}" if path else str(key)
                if str(key).endswith("port") and isinstance(item, int) and item:
                    why = refusal("127.0.0.1", item)
                    if why:
                        problems.append(f"{sub} = {item}: {why}")
                else:
                    walk(item, sub)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")
        elif isinstance(value, str):
            for host, port in _HOST_PORT.findall(value):
                if host.isdigit():
                    continue  # a time of day ("18:00"), not an address
                why = refusal(host.strip("[]"), int(port))
                if why:
                    problems.append(f"{path} = {value!r}: {why}")

    walk(data, "")
    if problems:
        pytest.fail(f"{where} reaches outside the test's world:\n  " + "\n  ".join(problems))


# -- the pytest plugin ---------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    for name in [n for n in os.environ if FOREIGN_ENV.match(n)]:
        del os.environ[name]
    install()


def pytest_unconfigure(config: pytest.Config) -> None:
    uninstall()


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: Any) -> Iterator[None]:
    wide = fixturedef.scope != "function"
    if wide:
        with REGISTRY.lock:
            REGISTRY.long_lived_depth += 1
    try:
        yield
    finally:
        if wide:
            with REGISTRY.lock:
                REGISTRY.long_lived_depth -= 1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    REGISTRY.current = item.nodeid
    try:
        yield
    finally:
        REGISTRY.end_test()
        REGISTRY.current = f"(after {item.nodeid})"


@pytest.fixture(autouse=True)
def own_world_guard() -> Iterator[None]:
    """Fails the test (at teardown) for any connection the guard refused while it ran."""
    # Refused after the last test's check (a thread outliving it): the session reports those,
    # so no test is blamed for another's leftovers.
    REGISTRY.stray += REGISTRY.take_violations()
    yield
    problems = REGISTRY.take_violations()
    if problems:
        pytest.fail("connections outside the test's world:\n  " + "\n  ".join(_counted(problems)))


def _counted(problems: list[str]) -> list[str]:
    """Each problem once, in order, with how often it happened (a retry loop repeats one)."""
    counts: dict[str, int] = {}
    for problem in problems:
        counts[problem] = counts.get(problem, 0) + 1
    return [p if n == 1 else f"{p} (x{n})" for p, n in counts.items()]


# Under pytest-xdist a worker's session status never reaches the run's: a worker hands its
# strays to the controller (``workeroutput``), which reports them with its own.
_WORKER_OUTPUT_KEY = "own_world_stray"
_STRAY_FROM_WORKERS: list[str] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: a worker finished; keep the strays it reported."""
    output = getattr(node, "workeroutput", None) or {}
    _STRAY_FROM_WORKERS.extend(output.get(_WORKER_OUTPUT_KEY, []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    problems = REGISTRY.stray + REGISTRY.take_violations()
    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:  # an xdist worker: the controller reports for the run
        worker_output[_WORKER_OUTPUT_KEY] = problems
        return
    problems += _STRAY_FROM_WORKERS
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", "connections outside any test's world", red=True)
            for problem in _counted(problems):
                reporter.write_line(problem)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
