"""How the agent takes OTA on board: three calls for ``device/agent.py``.

    from device.ota import agent_hooks

    version = agent_hooks.apply_persisted_config(settings)   # before building the rooms
    engine = agent_hooks.load_engine(settings)               # instead of VisionEngine.load(
                                                             #   settings.vision.pack, ...)
    ota = agent_hooks.attach(settings, transport, callbacks, worker=vision)
    ...                                                      # (before transport.connect())
    ota.stop()                                               # in Agent.stop()

``attach`` is lent what OTA uses and nothing else: the settings, the link, the agent's
command callbacks (``AgentCallbacks``, built by the agent) and the classification worker's
serving door. It makes the worker serve an ``EngineGuard`` (thread-safe swaps, a new pack's
trial) and routes the link's ``model``, ``config`` and ``command`` downlinks to the OTA
service. A route made while the link is up subscribes again, so the retained desired-model and
desired-config messages reach the service either way.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from device.ota import remote_config
from device.ota.engine_guard import EngineGuard
from device.ota.layout import Layout, active_pack_path, load_active_engine
from device.ota.remote_commands import AgentCallbacks
from device.ota.reports import Reporter, TransportReporter
from device.ota.service import OtaService
from device.ota.state import StateFile
from device.vision.engine import ServingEngine, VisionEngine

if TYPE_CHECKING:
    from device.config import Settings
    from device.uplink.transport import Transport

log = logging.getLogger("camtrap.ota")

__all__ = [
    "AgentCallbacks",
    "ServingDoor",
    "active_pack_path",
    "apply_persisted_config",
    "attach",
    "load_engine",
]

# One route for the OTA downlinks (model, config, command): the service tells them apart.
OTA_DOWNLINKS = "+"


class ServingDoor(Protocol):
    """What OTA needs of the classification worker (``ClassificationWorker`` is one): the
    engine it serves before OTA attaches (the pack loaded at start, or none), and the one way
    to change what it serves."""

    @property
    def engine(self) -> ServingEngine | None: ...

    def serve(self, engine: ServingEngine | None) -> None: ...


def apply_persisted_config(settings: Settings) -> int:
    """Re-apply the last remote config to ``settings``; returns its version (0: none)."""
    return remote_config.apply_persisted(settings, StateFile(Layout.of(settings).state_path))


def load_engine(settings: Settings) -> VisionEngine | None:
    """The engine to serve at start: ``current``, else ``previous``, else ``vision.pack``."""
    return load_active_engine(settings)


def attach(
    settings: Settings,
    transport: Transport,
    callbacks: AgentCallbacks,
    *,
    worker: ServingDoor | None = None,
    reporter: Reporter | None = None,
) -> OtaService:
    """Start the OTA service on ``transport`` (best before it connects)."""
    serving = worker.engine if worker is not None else None
    if isinstance(serving, EngineGuard):
        guard = serving  # attached before: the worker already serves through this guard
    else:
        guard = EngineGuard(serving if isinstance(serving, VisionEngine) else None)
    if worker is not None and serving is not None and serving is not guard:
        # The guard stands in for the engine the worker uses (see engine_guard); with no
        # engine yet, the worker keeps None until the service serves a pack.
        worker.serve(guard)

    def on_config(changed: list[str]) -> None:
        if "uplink.max_payload_bytes" in changed:
            transport.max_payload_cap = settings.uplink.max_payload_bytes
        if callbacks.config_applied is not None:
            callbacks.config_applied(changed)

    service = OtaService(
        settings,
        reporter or TransportReporter(transport),
        callbacks=callbacks,
        guard=guard,
        on_config_applied=on_config,
        worker=worker,
    ).start()
    transport.on_downlink(OTA_DOWNLINKS, service.handle_downlink)
    return service
