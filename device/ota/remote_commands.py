"""Commands from the cloud and the agent callbacks that carry them out.

Known commands: ``sync-now`` (drain the outbox now), ``capture-test`` (take one frame and
upload it at top priority), ``restart-agent`` (stop cleanly so systemd starts us again),
``reset-site-memory`` (forget the remembered empty scene, e.g. after the camera was moved
without a new deployment id, or the scene changed for good). The
agent provides one callback per command (``AgentCallbacks``); a command whose callback is
missing fails with a report. Anything unknown or malformed gets an error report and nothing
else happens. A command id is carried out at most once (ids are remembered in the state file),
since QoS 1 may deliver a message twice.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from device.ota.reports import Reporter
from device.ota.state import StateFile
from device.protocol import Command, ProtocolError, decode

log = logging.getLogger("camtrap.ota")

KNOWN = ("sync-now", "capture-test", "restart-agent", "reset-site-memory")
REMEMBERED_IDS = 100
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")


@dataclass
class AgentCallbacks:
    """What the agent lends the OTA service. Each runs on the OTA control thread, must not
    block for long, and may return a short JSON-able result for the report (e.g. the media id
    of the test frame)."""

    sync_now: Callable[[], Any] | None = None
    capture_test: Callable[[], Any] | None = None
    restart_agent: Callable[[], Any] | None = None
    reset_site_memory: Callable[[], Any] | None = None
    # Not a command: remote config was applied (the keys changed), for rooms that must
    # notice at once (the capture loop sleeps until its next edge; docs/power.md).
    config_applied: Callable[[list[str]], None] | None = None

    def for_name(self, name: str) -> Callable[[], Any] | None:
        return {
            "sync-now": self.sync_now,
            "capture-test": self.capture_test,
            "restart-agent": self.restart_agent,
            "reset-site-memory": self.reset_site_memory,
        }.get(name)


class CommandHandler:
    def __init__(
        self, device_id: str, callbacks: AgentCallbacks, state: StateFile, report: Reporter
    ):
        self.device_id = device_id
        self.callbacks = callbacks
        self.state = state
        self.report = report

    def handle(self, payload: bytes) -> str:
        """Carry out one command payload; returns the outcome code it reported."""
        try:
            message = decode(payload)
        except ProtocolError as exc:
            return self._refuse(_guess_id(payload), None, f"malformed command: {exc}")
        if not isinstance(message, Command):
            return self._refuse(None, None, f"a {message.type} message on the command topic")
        if message.device_id != self.device_id:
            return self._refuse(message.command_id, message.name, "command for another device")
        if message.name not in KNOWN:
            return self._refuse(
                message.command_id, message.name, f"unknown command (known: {', '.join(KNOWN)})"
            )
        if not self._first_time(message.command_id):
            log.info("command %s already carried out, ignoring the repeat", message.command_id)
            return "duplicate"
        base = {"command_id": message.command_id, "name": message.name}
        callback = self.callbacks.for_name(message.name)
        if callback is None:
            self.report("command.failed", "error", {**base, "detail": "not supported here"})
            return "command.failed"
        try:
            result = callback()
        except Exception as exc:  # the agent's fault must not kill the OTA thread
            log.exception("command %s failed", message.name)
            self.report("command.failed", "error", {**base, "detail": repr(exc)[:500]})
            return "command.failed"
        self.report("command.done", "info", {**base, "result": result})
        return "command.done"

    def _refuse(self, command_id: str | None, name: str | None, why: str) -> str:
        self.report(
            "command.rejected", "warning", {"command_id": command_id, "name": name, "detail": why}
        )
        return "command.rejected"

    def _first_time(self, command_id: str) -> bool:
        with self.state.lock:
            seen = self.state.state.recent_commands
            if command_id in seen:
                return False
            seen.append(command_id)
            del seen[:-REMEMBERED_IDS]
            self.state.save()
        return True


def _guess_id(payload: bytes) -> str | None:
    """The command id of a malformed command, if one can be read, so the reply names it."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    value = obj.get("commandID") if isinstance(obj, dict) else None
    return value if isinstance(value, str) and _ID.match(value) else None
