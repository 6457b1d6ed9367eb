"""The provisioning run, step by step: identity, answers, credentials, Wi-Fi, clock, self-test,
config, deployment, service, label.

Nothing the agent reads changes before the ``config`` step, which replaces camtrap.toml in one
rename; a fault or Ctrl-C before it leaves the old configuration whole (keys and certificates
written earlier belong together and to this device, so the old config still works with them).
``hook(step)`` runs as each step starts: tests interrupt the run there.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.config import Settings
from provisioning import clock as clock_mod
from provisioning import configfile, credentials, deployment, label, selftest, wifi
from provisioning.identity import device_id as find_device_id
from provisioning.paths import SERVICE, Paths
from provisioning.prompt import Prompter
from provisioning.questions import QUESTIONS, Answers, check_given, complete
from provisioning.registry_client import put_deployment
from provisioning.system import Effects, ProvisionError

STEPS = (
    "identity",
    "answers",
    "credentials",
    "wifi",
    "clock",
    "selftest",
    "config",
    "deployment",
    "service",
    "label",
)


class SelfTestFailed(ProvisionError):
    pass


@dataclass
class Options:
    paths: Paths
    given: Answers = field(default_factory=dict)
    interactive: bool = False
    dry_run: bool = False
    time: str | None = None
    offline: bool = False
    pir_timeout: float = 30.0
    accept_failures: bool = False


@dataclass
class Outcome:
    device_id: str = ""
    deployment_id: str = ""
    config_written: bool = False
    summary: list[tuple[str, str]] = field(default_factory=list)


def _previous(existing: dict[str, Any], open_one: dict[str, Any] | None) -> Answers:
    """Answers an earlier run gave, as defaults for this one (so a re-run is a confirmation)."""
    prev: Answers = {}
    if open_one:
        for key, name in (
            ("deployment.location_name", "locationName"),
            ("deployment.latitude", "latitude"),
            ("deployment.longitude", "longitude"),
            ("deployment.coordinate_uncertainty_m", "coordinateUncertainty"),
            ("deployment.country", "countryCode"),
            ("deployment.admin1", "admin1"),
            ("deployment.camera_height_m", "cameraHeight"),
            ("deployment.camera_tilt_deg", "cameraTilt"),
            ("deployment.camera_heading_deg", "cameraHeading"),
            ("deployment.habitat", "habitat"),
            ("deployment.bait_use", "baitUse"),
            ("deployment.feature_type", "featureType"),
            ("deployment.setup_by", "setupBy"),
        ):
            if open_one.get(name) is not None:
                prev[key] = open_one[name]
    # Answers kept under their own name in camtrap.toml (pir.pin, capture.*, device.timezone):
    # the file, hand edits included, proposes them again.
    for key in (q.key for q in QUESTIONS if q.setting == q.key):
        section, name = key.split(".")
        value = existing.get(section, {}).get(name)
        if value is not None:
            prev[key] = value
    return prev


class Provisioner:
    def __init__(
        self,
        options: Options,
        effects: Effects,
        prompter: Prompter | None = None,
        hook: Callable[[str], None] | None = None,
    ) -> None:
        self.o = options
        self.paths = options.paths
        self.fx = effects
        self.prompter = prompter
        self.hook = hook or (lambda _step: None)
        self.fx.hook = self.hook
        self.outcome = Outcome()
        self._stopped_service = False

    def _step(self, name: str, title: str) -> None:
        self.hook(name)
        self.fx.say(f"\n== {title}")

    def run(self) -> Outcome:
        try:
            return self._run()
        finally:
            if self._stopped_service and not self.outcome.config_written:
                # We stopped a working trap to test its hardware; leave it as we found it.
                self.fx.run(["systemctl", "start", SERVICE])

    def _run(self) -> Outcome:
        paths, fx, out = self.paths, self.fx, self.outcome
        if fx.dry_run:
            fx.say("dry run: nothing will be changed; every change is printed instead")

        self._step("identity", "Identity")
        device_id, source = find_device_id(paths, fx)
        out.device_id = device_id
        fx.say(f"  device id {device_id} ({source})")

        self._step("answers", "Deployment and hardware")
        existing = configfile.read_existing(paths.config)
        try:
            history = deployment.load_history(paths.history, device_id)
        except ValueError as exc:
            raise ProvisionError(str(exc)) from exc
        answers = self._answers(existing, history, device_id)
        try:
            networks = wifi.networks_from(answers)
            plan = deployment.plan(history, answers, device_id)
        except ValueError as exc:
            raise ProvisionError(str(exc)) from exc
        out.deployment_id = plan.current["deploymentID"]
        would = "would " if fx.dry_run else ""
        if plan.ended:
            ends = "would end" if fx.dry_run else "ends"
            fx.say(f"  the trap moved: deployment {plan.ended['deploymentID']} {ends} now")
        fx.say(
            f"  deployment {out.deployment_id} "
            + (
                f"{would}start{'' if would else 's'} now"
                if plan.started
                else "continues (same place)"
            )
        )

        self._step("credentials", "Credentials")
        creds, broker = self._credentials(answers, device_id, existing)

        self._step("wifi", "Wi-Fi")
        added = wifi.configure(fx, networks)
        fx.say(f"  {'; '.join(added)}" if added else "  no networks given; none changed")

        data, secrets = configfile.build(
            paths, existing, answers, device_id, out.deployment_id, creds, broker
        )
        settings = configfile.validate(data, secrets)

        self._step("clock", "Clock")
        self._clock(settings)

        self._step("selftest", "Self-test")
        self._selftest(settings)

        self._step("config", "Configuration")
        configfile.write(paths, fx, data, secrets)
        out.config_written = not fx.dry_run
        fx.say(f"  {paths.config} {'would be ' if fx.dry_run else ''}written")

        self._step("deployment", "Deployment record")
        self._record_deployment(history, plan, answers, creds)

        self._step("service", "Service")
        ran = True
        for argv in (["systemctl", "enable", SERVICE], ["systemctl", "restart", SERVICE]):
            result = fx.run(argv)
            if not result.ok:
                raise ProvisionError(
                    f"{' '.join(argv)} failed: {result.stderr.strip()} (the config is written; "
                    f"see journalctl -u {SERVICE})"
                )
            ran = ran and result.ran
        if ran:
            fx.say(f"  {SERVICE} enabled and (re)started")
        else:
            fx.say(f"  would enable and (re)start {SERVICE} (not done: {self._not_done()})")

        self._step("label", "Label")
        fx.write(paths.label, label.png(device_id, out.deployment_id))
        out.summary = [
            ("device id", device_id),
            ("deployment", out.deployment_id),
            (
                "location",
                f"{answers['deployment.location_name']} "
                f"({answers['deployment.latitude']}, {answers['deployment.longitude']}"
                f" ±{answers.get('deployment.coordinate_uncertainty_m')} m, "
                f"{answers.get('deployment.country') or 'country unknown'})",
            ),
            (
                "pins",
                f"PIR GPIO {answers['pir.pin']}, IR "
                + ("none" if answers.get("ir.pin") is None else f"GPIO {answers['ir.pin']}"),
            ),
            ("broker", f"{settings.uplink.mqtt.host}:{settings.uplink.mqtt.port}"),
            ("config", str(paths.config)),
            ("label", str(paths.label)),
        ]
        if fx.dry_run:
            fx.say("\n== Summary (dry run: nothing was changed; this is what a real run would do)")
        else:
            fx.say("\n== Summary")
        width = max(len(k) for k, _ in out.summary)
        for key, value in out.summary:
            fx.say(f"  {key.ljust(width)}  {value}")
        label.print_terminal(fx.out, device_id, out.deployment_id)
        return out

    # -- steps ---------------------------------------------------------------------------

    def _answers(self, existing: dict[str, Any], history, device_id: str) -> Answers:
        mqtt = existing.get("uplink", {}).get("mqtt", {})
        context: Answers = {
            "_has_credentials": credentials.current(self.paths, device_id) is not None,
            "_broker_host": mqtt.get("host"),
            "_broker_port": mqtt.get("port"),
            "_previous": _previous(existing, history.open),
        }
        try:
            given = check_given(self.o.given)
            if self.o.interactive:
                assert self.prompter is not None
                answers = self.prompter.fill(given, context)
            else:
                answers, missing = complete(given, context)
                if missing:
                    raise ProvisionError(
                        "missing answers (give them in --answers or --set key=value): "
                        + ", ".join(missing)
                    )
        except ValueError as exc:
            raise ProvisionError(f"bad answer: {exc}") from exc
        return answers

    def _credentials(
        self, answers: Answers, device_id: str, existing: dict[str, Any]
    ) -> tuple[credentials.Credentials | None, tuple[str | None, int | None]]:
        method = answers["registration.method"]
        broker = (answers.get("broker.host"), answers.get("broker.port"))
        if method == "keep":
            creds = credentials.current(self.paths, device_id)
            if creds is None:
                raise ProvisionError(
                    "this trap has no usable key and certificate: enrol with the registry "
                    "(registration.method = registry) or import certificate files"
                )
            self.fx.say(f"  keeping {creds.cert}")
            return creds, broker
        if method == "import":
            creds = credentials.import_dir(
                self.paths, self.fx, device_id, answers["registration.import_dir"]
            )
            done = "would import" if self.fx.dry_run else "imported"
            self.fx.say(f"  {done} {creds.cert} from {answers['registration.import_dir']}")
            return creds, broker
        creds = credentials.enrol(
            self.paths,
            self.fx,
            device_id,
            answers["registration.url"],
            answers.get("registration.ca_file"),
            answers["registration.token"],
        )
        if self.fx.dry_run:
            self.fx.say(
                f"  would enrol with the registry at {answers['registration.url']}: the fleet CA"
                f" would sign a certificate for {device_id} ({creds.cert})"
            )
        else:
            self.fx.say(f"  enrolled: {creds.cert} signed by the fleet CA")
        return creds, (creds.broker_host or broker[0], creds.broker_port or broker[1])

    def _clock(self, settings: Settings) -> None:
        source, synced = clock_mod.state(settings.clock)
        if synced:
            self.fx.say(f"  [PASS] clock synchronised ({source})")
            return
        self.fx.say(f"  clock not synchronised (source: {source}); captures are flagged")
        zone = settings.device.timezone
        typed = self.o.time
        how = "--time"
        if typed is None and self.o.interactive and self.prompter is not None:
            now = clock_mod.dt.datetime.now(clock_mod.ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")
            while typed is None:
                raw = self.prompter._read(
                    f"Current local time ({zone}), YYYY-MM-DD HH:MM [keep {now}]: "
                ).strip()
                if not raw:
                    self.fx.say("  clock left as it is")
                    return
                try:
                    clock_mod.parse_time(raw, zone)
                    typed, how = raw, "typed by the technician"
                except ValueError as exc:
                    self.fx.say(f"  not accepted: {exc}")
        if typed is None:
            self.fx.say("  give --time to set it by hand; it stays flagged until NTP syncs")
            return
        try:
            when = clock_mod.parse_time(typed, zone)
        except ValueError as exc:
            raise ProvisionError(f"--time: {exc}") from exc
        lines = clock_mod.set_manually(self.fx, settings.clock, when, how)
        if not self.fx.commands_run:
            # The date/hwclock commands were only printed: the clock is as it was.
            stamp = when.astimezone(clock_mod.dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            self.fx.say(
                f"  would set the clock to {stamp} UTC and mark its source 'manual'"
                f" (not done: {self._not_done()})"
            )
            return
        for line in lines:
            self.fx.say(f"  {line}; clock source is now 'manual'")

    def _not_done(self) -> str:
        return "dry run" if self.fx.dry_run else "--print-commands"

    def _selftest(self, settings: Settings) -> None:
        fx = self.fx
        if fx.dry_run:
            fx.say("  [SKIP] every check: dry run (hardware and broker are not touched)")
            return
        active = fx.run(["systemctl", "is-active", "--quiet", SERVICE], reads=True)
        if active.ok:
            fx.run(["systemctl", "stop", SERVICE])  # it holds the camera and the pins
            self._stopped_service = True
        checks = [
            selftest.check_camera(settings),
            selftest.check_pir(settings, self.o.pir_timeout, fx.say),
            selftest.check_ir(settings),
            selftest.check_disk(settings),
            selftest.check_pipeline(settings, self.paths.selftest_dir),
            selftest.check_broker(settings, self.o.offline),
        ]
        for check in checks:
            fx.say(f"  {check.line()}")
        failed = [c for c in checks if c.status == selftest.FAIL]
        if not failed:
            return
        names = ", ".join(c.name for c in failed)
        if self.o.accept_failures:
            fx.say(f"  continuing despite failures ({names}): --accept-failures")
            return
        if (
            self.o.interactive
            and self.prompter is not None
            and self.prompter.confirm(f"{len(failed)} check(s) failed ({names}). Deploy anyway?")
        ):
            return
        raise SelfTestFailed(f"self-test failed: {'; '.join(c.line() for c in failed)}")

    def _record_deployment(self, history, plan, answers: Answers, creds) -> None:
        fx = self.fx
        deployment.apply(history, plan)
        url = answers.get("registration.url") or history.registry.get("url")
        ca_file = answers.get("registration.ca_file") or history.registry.get("ca_file")
        if url:
            history.registry = {"url": url, "ca_file": str(ca_file) if ca_file else None}
        if fx.dry_run:
            pending = [d for d in history.deployments if not d.get("registrySent")]
            if pending and url:
                fx.say(f"  would send {len(pending)} deployment record(s) to the registry at {url}")
            deployment.save_history(self.paths, fx, history)
            return
        send_pending(history, creds, fx)
        deployment.save_history(self.paths, fx, history)


def send_pending(history, creds, fx: Effects) -> None:
    """Send every deployment record the registry has not confirmed; failures wait for later."""
    url = history.registry.get("url")
    pending = [d for d in history.deployments if not d.get("registrySent")]
    if not pending:
        fx.say("  registry has every deployment record")
        return
    if not url or creds is None:
        fx.say(f"  {len(pending)} deployment record(s) kept locally (no registry known)")
        return
    ca_file = history.registry.get("ca_file")
    for record in pending:
        try:
            put_deployment(
                url,
                Path(ca_file) if ca_file else None,
                creds.cert,
                creds.key,
                deployment.registry_record(record),
            )
        except ProvisionError as exc:
            fx.say(f"  warning: {record['deploymentID']} not sent ({exc}); will retry next run")
            continue
        record["registrySent"] = True
        fx.say(f"  sent {record['deploymentID']} to the registry")


def say_err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
