"""A runtime mosquitto: own port, own config, own PKI, per-device ACL; start, kill, restart.

Used by ``camtrap-cloud demo`` and by the test fixtures (tests/support/broker.py), so both run
the broker exactly as configured here. Each broker gets a fresh fleet CA (or the one in
``pki_dir`` if it exists), a server certificate for 127.0.0.1/localhost, a TLS listener that
requires client certificates and takes the certificate's CN as the username, and the ACL the
product ships: a device writes only ``camtrap/<itself>/up/#`` and reads only
``camtrap/<itself>/down/#``; the ``ingest`` user reads every up topic and writes every down topic.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cloud_stub import pki

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
INGEST_USER = "ingest"

ACL = f"""\
# Written by cloud_stub/broker.py.
user {INGEST_USER}
topic read camtrap/+/up/#
topic write camtrap/+/down/#

pattern write camtrap/%u/up/#
pattern read camtrap/%u/down/#
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Broker:
    workdir: Path
    port: int
    max_packet_size: int | None = None
    passwords: dict[str, str] | None = None  # adds a username/password TLS listener
    ca: pki.CertificateAuthority = field(init=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _certs: dict[str, tuple[Path, Path]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.pki_dir = self.workdir / "pki"
        self.ca = (
            pki.load_ca(self.pki_dir)
            if (self.pki_dir / "ca.crt").exists()
            else pki.create_ca(self.pki_dir)
        )
        self.server_cert, self.server_key = pki.issue_server_cert(self.ca, self.pki_dir)
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        self.acl_file = self.workdir / "acl"
        self.acl_file.write_text(ACL)
        self.password_port = free_port() if self.passwords else None
        self.password_file = self.workdir / "passwords"
        if self.passwords:
            self.password_file.write_text("")
            for user, password in self.passwords.items():
                subprocess.run(
                    [MOSQUITTO_PASSWD, "-b", str(self.password_file), user, password], check=True
                )
        self.config_file = self.workdir / "mosquitto.conf"
        self.log_file = self.workdir / "mosquitto.log"
        self.config_file.write_text(self._config())

    def ingest_command(self, root: Path, *, log_level: str = "INFO") -> list[str]:
        """``camtrap-cloud ingest`` subscribed to this broker as the privileged ingest user."""
        cert, key = self.client_cert(INGEST_USER)
        return [
            sys.executable,
            "-m",
            "cloud_stub.cli",
            "--log-level",
            log_level,
            "ingest",
            "--root",
            str(root),
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            str(self.port),
            "--ca",
            str(self.ca_file),
            "--cert",
            str(cert),
            "--key",
            str(key),
        ]

    @property
    def ca_file(self) -> Path:
        return self.ca.cert_path

    def _config(self) -> str:
        lines = [
            "per_listener_settings false",
            "allow_anonymous false",
            "persistence true",
            f"persistence_location {self.workdir / 'data'}/",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"acl_file {self.acl_file}",
            # Offline devices may owe many acks; the default of 1000 queued messages is too few.
            "max_queued_messages 100000",
            # Ingest PUBACKs only once a batch is committed; mosquitto's default of 20
            # unacknowledged messages per client would cap its batches at 20.
            "max_inflight_messages 1000",
            f"listener {self.port} 127.0.0.1",
            f"cafile {self.ca.cert_path}",
            f"certfile {self.server_cert}",
            f"keyfile {self.server_key}",
            "require_certificate true",
            "use_identity_as_username true",
        ]
        if self.password_port:
            # A second TLS listener for username/password devices (no client certificate).
            lines += [
                f"password_file {self.password_file}",
                f"listener {self.password_port} 127.0.0.1",
                f"cafile {self.ca.cert_path}",
                f"certfile {self.server_cert}",
                f"keyfile {self.server_key}",
            ]
        if self.max_packet_size:
            lines.append(f"max_packet_size {self.max_packet_size}")
        if os.geteuid() == 0:
            # As root mosquitto would switch to user "mosquitto", which cannot read our tmp files.
            lines.append("user root")
        return "\n".join(lines) + "\n"

    def client_cert(self, client_id: str) -> tuple[Path, Path]:
        """(cert, key) for a device or the ingest user, signed by this broker's CA."""
        if client_id not in self._certs:
            self._certs[client_id] = pki.issue_client_cert(
                self.ca, self.pki_dir / "clients", client_id
            )
        return self._certs[client_id]

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None, "broker already running"
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config_file)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no final persistence save."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        """Start again on the same port with the same persistence directory."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""
