"""The device's OTA service: downlink messages in, installs, config changes, commands, reports.

``handle_downlink(suffix, payload)`` is the transport's downlink hook; it runs on paho's
network thread, so it only queues. Two threads do the work: one for model updates (a download
can take minutes; only the newest desired model waits) and one for config and commands, so a
``restart-agent`` is never stuck behind a download.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from device.contracts.protocol import DesiredConfig, DesiredModel, ProtocolError, decode
from device.contracts.signing import trusted_keys
from device.ota import remote_config
from device.ota.engine_guard import EngineGuard
from device.ota.installer import EngineLoader, ModelUpdater, _default_loader
from device.ota.layout import Layout
from device.ota.remote_commands import AgentCallbacks, CommandHandler
from device.ota.reports import Reporter
from device.ota.state import StateFile

if TYPE_CHECKING:
    from device.config import Settings
    from device.ota.agent_hooks import ServingDoor
    from device.vision.engine import VisionEngine

log = logging.getLogger("camtrap.ota")

_STOP = object()


class OtaService:
    def __init__(
        self,
        settings: Settings,
        report: Reporter,
        *,
        callbacks: AgentCallbacks | None = None,
        guard: EngineGuard | None = None,
        engine_loader: EngineLoader | None = None,
        on_config_applied: Callable[[list[str]], None] | None = None,
        worker: ServingDoor | None = None,
    ) -> None:
        self.settings = settings
        self.device_id = settings.device.id
        self.report = report
        self.layout = Layout.of(settings)
        self.layout.ensure()
        self.state = StateFile(self.layout.state_path)
        self.trusted = trusted_keys(settings.ota.trusted_keys, [settings.ota.trusted_keys_dir])
        self.guard = guard if guard is not None else EngineGuard()
        self.load_engine = engine_loader or _default_loader
        self.updater = ModelUpdater(
            settings,
            self.state,
            self.trusted,
            report,
            engine_loader=self.load_engine,
            serve=self._serve,
        )
        self.commands = CommandHandler(
            self.device_id, callbacks or AgentCallbacks(), self.state, report
        )
        self.on_config_applied = on_config_applied
        # The classification worker's serving door: it is handed the guard once a pack
        # serves (``serve``), and from then on only the guard's engine changes.
        self.worker = worker
        self._model_q: queue.Queue[Any] = queue.Queue()
        self._control_q: queue.Queue[Any] = queue.Queue()
        self._threads: list[threading.Thread] = []
        # Work queued or in progress per thread; wait_idle waits for both to reach zero.
        self._busy = {"model": 0, "control": 0}
        self._busy_cond = threading.Condition()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> OtaService:
        self.updater.reconcile()
        if not self.trusted:
            log.warning("no trusted OTA keys configured: every desired model will be refused")
        for name, target in (("model", self._model_loop), ("control", self._control_loop)):
            thread = threading.Thread(target=target, name=f"ota-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._resume_trial()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._model_q.put(_STOP)
        self._control_q.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def wait_idle(self, timeout: float) -> bool:
        """True once both queues are empty and nothing is in progress (tests, simulation)."""
        with self._busy_cond:
            return self._busy_cond.wait_for(lambda: not any(self._busy.values()), timeout)

    def _queue(self, name: str, item: Any) -> None:
        with self._busy_cond:
            self._busy[name] += 1
        (self._model_q if name == "model" else self._control_q).put(item)

    def _done(self, name: str) -> None:
        with self._busy_cond:
            self._busy[name] -= 1
            self._busy_cond.notify_all()

    @property
    def config_version(self) -> int:
        return self.state.state.config_version

    # -- the transport's downlink hook (paho's thread: queue only) -------------------------

    def handle_downlink(self, suffix: str, payload: bytes) -> None:
        if not self.settings.ota.enabled:
            return
        if suffix == "model":
            self._queue("model", ("desired", payload))
        elif suffix in ("config", "command"):
            self._queue("control", (suffix, payload))

    # -- model updates ---------------------------------------------------------------------

    def _model_loop(self) -> None:
        while True:
            item = self._model_q.get()
            if item is _STOP:
                return
            # Only the newest desired model matters; trial results are all kept.
            if item[0] == "desired":
                newer_pending = [i for i in list(self._model_q.queue) if i is not _STOP]
                if any(i[0] == "desired" for i in newer_pending):
                    self._done("model")
                    continue
            try:
                if item[0] == "desired":
                    self._desired_model(item[1])
                else:
                    self.updater.finish_trial(item[1], item[2])
            except Exception:  # never let one bad update end the thread
                log.exception("model update failed unexpectedly")
            self._done("model")

    def _desired_model(self, payload: bytes) -> None:
        try:
            desired = decode(payload)
        except ProtocolError as exc:
            self.report("model.receive.failed", "error", {"detail": str(exc)[:500]})
            return
        if not isinstance(desired, DesiredModel) or desired.device_id != self.device_id:
            self.report("model.receive.failed", "error", {"detail": "not a desired model for me"})
            return
        if not self.updater.wanted(desired):
            log.info("desired model %s@%s already handled", desired.name, desired.version)
            return
        outcome = self.updater.install(desired)
        log.info("update to %s@%s: %s", desired.name, desired.version, outcome)

    def _serve(self, engine: VisionEngine, trial: int) -> None:
        self.guard.swap(engine, trial, self._trial_result if trial else None)
        if self.worker is not None and self.worker.engine is not self.guard:
            self.worker.serve(self.guard)

    def _trial_result(self, passed: bool, detail: str) -> None:
        # The worker thread's word; the symlink and the state move on the model thread.
        self._queue("model", ("trial", passed, detail))

    def _resume_trial(self) -> None:
        """A restart inside a trial: put the serving pack on probation again, with the
        previous pack loaded as the fallback."""
        trial = self.state.state.trial
        serving = self.guard.engine
        if trial is None or serving is None:
            return
        if serving.pack.path.resolve() != self.layout.pack_dir(trial.name, trial.version).resolve():
            return
        previous = (
            self.layout.resolve(trial.previous) if trial.previous else self.settings.vision.pack
        )
        try:
            fallback = self.load_engine(previous, self.settings.vision, self.settings.location)
        except Exception as exc:
            log.warning("trial resumed without a fallback engine: %s", exc)
            return
        self.guard.rearm(fallback, trial.remaining, self._trial_result)

    # -- config and commands ---------------------------------------------------------------

    def _control_loop(self) -> None:
        while True:
            item = self._control_q.get()
            if item is _STOP:
                return
            suffix, payload = item
            try:
                if suffix == "config":
                    self._desired_config(payload)
                else:
                    self.commands.handle(payload)
            except Exception:
                log.exception("%s message failed unexpectedly", suffix)
            self._done("control")

    def _desired_config(self, payload: bytes) -> None:
        try:
            desired = decode(payload)
        except ProtocolError as exc:
            self.report("config.rejected", "error", {"detail": f"malformed: {exc}"[:500]})
            return
        if not isinstance(desired, DesiredConfig) or desired.device_id != self.device_id:
            self.report("config.rejected", "error", {"detail": "not a desired config for me"})
            return
        applied = self.state.state.config_version
        if desired.version == applied:
            return  # the retained message again, after a reconnect
        base = {"version": desired.version, "applied_version": applied}
        if desired.version < applied:
            self.report("config.rejected", "warning", {**base, "detail": "older than applied"})
            return
        try:
            values = remote_config.validate(self.settings, desired.values)
        except remote_config.ConfigRejected as exc:
            self.report("config.rejected", "error", {**base, "detail": str(exc)[:500]})
            return
        changed = remote_config.apply(self.settings, values)
        remote_config.remember(self.state, desired.version, values)
        self._after_config(changed)
        restart = sorted(k for k in changed if k in remote_config.RESTART_KEYS)
        self.report(
            "config.applied",
            "info",
            {"version": desired.version, "changed": changed, "restart_required": restart},
        )

    def _after_config(self, changed: list[str]) -> None:
        sections = {key.split(".")[0] for key in changed}
        if "log.level" in changed:
            logging.getLogger().setLevel(self.settings.log.level)
        serving = self.guard.engine
        if serving is not None and sections & remote_config.ENGINE_SECTIONS:
            try:
                rebuilt = self.load_engine(
                    serving.pack.path, self.settings.vision, self.settings.location
                )
                self.guard.replace(rebuilt)
            except Exception as exc:
                log.error("vision settings changed but the engine could not be rebuilt: %s", exc)
        if self.on_config_applied is not None:
            self.on_config_applied(changed)
