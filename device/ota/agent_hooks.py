"""How the agent takes OTA on board: three calls for ``device/agent.py``.

    from device.ota import agent_hooks

    version = agent_hooks.apply_persisted_config(settings)   # before building the rooms
    engine = agent_hooks.load_engine(settings)               # instead of VisionEngine.load(
                                                             #   settings.vision.pack, ...)
    ota = agent_hooks.attach(agent, transport)               # before transport.connect()
    ...
    ota.stop()                                               # in Agent.stop()

``attach`` wraps the worker's engine in an ``EngineGuard`` (thread-safe swaps), hooks the
transport's downlink handler and wires the command callbacks to the agent. If the transport is
already connected it re-subscribes, so the retained desired-model and desired-config messages
are delivered again to the new handler.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from device.ota import remote_config
from device.ota.engine_guard import EngineGuard
from device.ota.layout import Layout, active_pack_path, load_active_engine
from device.ota.remote_commands import AgentCallbacks
from device.ota.reports import Reporter, TransportReporter
from device.ota.service import OtaService
from device.ota.state import StateFile
from device.protocol import TOPIC_ROOT

if TYPE_CHECKING:
    from device.config import Settings
    from device.uplink.transport import Transport
    from device.vision.engine import VisionEngine

log = logging.getLogger("camtrap.ota")

__all__ = ["active_pack_path", "apply_persisted_config", "attach", "load_engine"]


def apply_persisted_config(settings: Settings) -> int:
    """Re-apply the last remote config to ``settings``; returns its version (0: none)."""
    return remote_config.apply_persisted(settings, StateFile(Layout.of(settings).state_path))


def load_engine(settings: Settings) -> VisionEngine | None:
    """The engine to serve at start: ``current``, else ``previous``, else ``vision.pack``."""
    return load_active_engine(settings)


def default_callbacks(agent: Any) -> AgentCallbacks:
    """Callbacks from whatever the agent offers; a missing one makes its command fail."""

    def capture_test() -> str:
        agent.capture.trigger("test")
        return "triggered"

    uplink = getattr(agent, "uplink", None)
    sync_now = getattr(agent, "sync_now", None) or getattr(uplink, "sync_now", None)
    return AgentCallbacks(
        sync_now=sync_now,
        capture_test=getattr(agent, "capture_test", None)
        or (capture_test if hasattr(agent, "capture") else None),
        restart_agent=getattr(agent, "restart", None) or getattr(agent, "request_stop", None),
    )


def attach(
    agent: Any,
    transport: Transport,
    *,
    callbacks: AgentCallbacks | None = None,
    reporter: Reporter | None = None,
) -> OtaService:
    settings: Settings = agent.settings
    worker = getattr(agent, "vision", None)
    guard = EngineGuard(worker.engine if worker is not None else None)
    if worker is not None and worker.engine is not None:
        worker.engine = guard

    def on_config(changed: list[str]) -> None:
        if "uplink.max_payload_bytes" in changed and hasattr(transport, "max_payload_cap"):
            transport.max_payload_cap = settings.uplink.max_payload_bytes

    service = OtaService(
        settings,
        reporter or TransportReporter(transport),
        callbacks=callbacks or default_callbacks(agent),
        guard=guard,
        on_config_applied=on_config,
        worker=worker,
    ).start()
    if hasattr(transport, "downlink_handler"):
        transport.downlink_handler = service.handle_downlink
        client = getattr(transport, "client", None)
        if transport.is_connected and client is not None:
            client.subscribe(f"{TOPIC_ROOT}/{settings.device.id}/down/#", qos=1)
    return service
