"""What the script asks, once: prompt, help, default and validation for every answer.

The interactive prompter, the answers file and ``--set key=value`` all feed the same parsers, so
a value is checked the same way however it arrives. Keys are ``section.name``.

An answer that becomes a config key names it (``setting``): its bounds and its default are the
config model's (``provisioning.config_bounds``), so the script never accepts a value the agent
would refuse, nor proposes one the agent would not start with.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from provisioning import geo
from provisioning.config_bounds import Bounds, config_field

# Camtrap DP 1.0.2 deployments.featureType
FEATURE_TYPES = (
    "roadPaved",
    "roadDirt",
    "trailHiking",
    "trailGame",
    "roadUnderpass",
    "roadOverpass",
    "roadBridge",
    "culvert",
    "burrow",
    "nestSite",
    "carcass",
    "waterSource",
    "fruitingTree",
)

Answers = dict[str, Any]


@dataclass(frozen=True)
class Question:
    key: str
    prompt: str
    help: str
    parse: Callable[[Any, Answers], Any]
    default: Callable[[Answers], Any] = lambda _a: None
    optional: bool = False  # a blank answer means "none"
    when: Callable[[Answers], bool] = lambda _a: True
    ask: bool = True  # False: answers file / --set only, never prompted
    setting: str | None = None  # the camtrap.toml key the answer is written to


def _text(value: Any, _a: Answers) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("an answer is needed")
    if len(text) > 200:
        raise ValueError("at most 200 characters")
    return text


def _number(bounds: Bounds, unit: str) -> Callable[[Any, Answers], Any]:
    def parse(value: Any, _a: Answers) -> float | int:
        try:
            number = float(str(value).strip().replace(",", "."))
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
        if not math.isfinite(number):  # the model may take inf where it has no upper bound
            raise ValueError(f"{value!r} is not a number")
        if not bounds.admits(number):
            raise ValueError(f"must be {bounds.describe()} {unit}".rstrip())
        if bounds.integer:
            if number != int(number):
                raise ValueError("must be a whole number")
            return int(number)
        return number

    return parse


def _setting_number(setting: str, unit: str) -> Callable[[Any, Answers], Any]:
    """A number within the bounds the config model gives ``setting``."""
    return _number(config_field(setting).bounds, unit)


def _setting_default(setting: str) -> Callable[[Answers], Any]:
    """The config model's default for ``setting`` (None where the model leaves it unset)."""
    default = config_field(setting).default
    return lambda _a: default


def _latitude(value: Any, answers: Answers) -> float:
    parse = _setting_number("location.latitude", "degrees (south is negative)")
    return float(parse(value, answers))


def _longitude(value: Any, answers: Answers) -> float:
    parse = _setting_number("location.longitude", "degrees (west is negative)")
    lon = float(parse(value, answers))
    if lon == 0 and answers.get("deployment.latitude") == 0:
        raise ValueError("0, 0 is in the sea off Africa: the GPS fix is probably missing")
    return lon


def _country(value: Any, _a: Answers) -> str:
    return geo.check_country(str(value))


def _country_default(answers: Answers) -> str | None:
    lat, lon = answers.get("deployment.latitude"), answers.get("deployment.longitude")
    if lat is None or lon is None:
        return None
    candidates = geo.countries_at(lat, lon)
    return candidates[0] if candidates else None


def _country_help(answers: Answers) -> str:
    lat, lon = answers.get("deployment.latitude"), answers.get("deployment.longitude")
    found = geo.countries_at(lat, lon) if lat is not None and lon is not None else []
    guess = (
        f"Boxes holding {lat}, {lon}: {', '.join(found)} (smallest first)."
        if found
        else "No box in the offline table holds these coordinates: type the code."
    )
    return (
        "ISO 3166-1 alpha-3 code of the country the trap stands in (KEN, TZA, USA...). It "
        "decides which species the classifier may name here. The default is a guess from a "
        f"rough offline table of country bounding boxes; check it near borders. {guess}"
    )


def _gpio_range(setting: str) -> str:
    """``0-27`` for a help text, from the model's bounds of a pin setting."""
    bounds = config_field(setting).bounds
    return f"{bounds.low:g}-{bounds.high:g}"


def _pir_pin(value: Any, answers: Answers) -> int:
    return int(_setting_number("pir.pin", "(BCM GPIO numbers)")(value, answers))


def _ir_pin(value: Any, answers: Answers) -> int:
    pin = int(_setting_number("ir.pin", "(BCM GPIO numbers)")(value, answers))
    if pin == answers.get("pir.pin"):
        raise ValueError(f"GPIO {pin} is already the PIR pin; each pin can do one job")
    return pin


def _yes_no(value: Any, _a: Answers) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("y", "yes", "true", "1"):
        return True
    if text in ("n", "no", "false", "0"):
        return False
    raise ValueError("answer yes or no")


def _feature(value: Any, _a: Answers) -> str:
    text = str(value).strip()
    for name in FEATURE_TYPES:
        if name.lower() == text.lower():
            return name
    raise ValueError(f"one of: {', '.join(FEATURE_TYPES)} (or blank for none)")


def _timezone(value: Any, _a: Answers) -> str:
    text = str(value).strip()
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {text!r} (e.g. Africa/Nairobi, UTC)") from None
    return text


def _zone_guess(answers: Answers) -> geo.ZoneGuess | None:
    lat, lon = answers.get("deployment.latitude"), answers.get("deployment.longitude")
    if lat is None or lon is None:
        return None
    return geo.timezone_at(lat, lon)


def _timezone_default(answers: Answers) -> str:
    """Proposed from the location (the technician confirms it); the model's UTC without one."""
    guess = _zone_guess(answers)
    return guess.zone if guess is not None else str(config_field("device.timezone").default)


def _timezone_help(answers: Answers) -> str:
    guess = _zone_guess(answers)
    said = (
        f"The default, {guess.zone}, is {guess.how}; check it near a border."
        if guess is not None
        else "No location yet, so the default is UTC."
    )
    return (
        "IANA time zone name for local times (the IR schedule, the log), e.g. Africa/Nairobi. "
        f"Stored times carry offsets. {said}"
    )


def _method(value: Any, _a: Answers) -> str:
    text = str(value).strip().lower()
    if text not in ("registry", "import", "keep"):
        raise ValueError("registry, import or keep")
    return text


def _url(value: Any, _a: Answers) -> str:
    text = str(value).strip().rstrip("/")
    if not text.startswith("https://"):
        raise ValueError("the registry is only spoken to over HTTPS (https://host:port)")
    return text


def _path(value: Any, _a: Answers) -> Path:
    path = Path(str(value).strip()).expanduser()
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    return path


def _host(value: Any, _a: Answers) -> str:
    text = str(value).strip()
    if not text or any(c.isspace() for c in text) or "/" in text:
        raise ValueError("a host name or IP address")
    return text


def _ssid(value: Any, _a: Answers) -> str:
    text = str(value)
    if not 1 <= len(text.encode()) <= 32:
        raise ValueError("an SSID is 1 to 32 bytes")
    return text


def _psk(value: Any, _a: Answers) -> str:
    text = str(value)
    if not 8 <= len(text) <= 63:
        raise ValueError("a WPA passphrase is 8 to 63 characters")
    return text


def _registry(a: Answers) -> bool:
    return a.get("registration.method") == "registry"


def _import(a: Answers) -> bool:
    return a.get("registration.method") == "import"


QUESTIONS: tuple[Question, ...] = (
    Question(
        "deployment.location_name",
        "Location name",
        "A short name the team uses for this spot, e.g. 'Mara North, tree 14'.",
        _text,
    ),
    Question(
        "deployment.latitude",
        "Latitude (decimal degrees)",
        "WGS84 decimal degrees from the phone's GPS; south is negative (-1.2921).",
        _latitude,
        setting="location.latitude",
    ),
    Question(
        "deployment.longitude",
        "Longitude (decimal degrees)",
        "WGS84 decimal degrees; west is negative (36.8219).",
        _longitude,
        setting="location.longitude",
    ),
    Question(
        "deployment.coordinate_uncertainty_m",
        "Coordinate uncertainty (m)",
        "How far off the position may be, in metres (the phone shows its GPS accuracy).",
        _setting_number("location.coordinate_uncertainty_m", "metres"),
        # The model leaves it unset (unknown); a phone's GPS is usually this good.
        default=lambda a: 30,
        setting="location.coordinate_uncertainty_m",
    ),
    Question(
        "deployment.country",
        "Country (ISO alpha-3)",
        "",
        _country,
        default=_country_default,
        setting="location.country",
    ),
    Question(
        "deployment.admin1",
        "US state (two letters)",
        "USPS state code; range maps for US species are per state.",
        lambda v, a: geo.check_us_state(str(v)),
        when=lambda a: a.get("deployment.country") == "USA",
        setting="location.admin1",
    ),
    Question(
        "device.timezone",
        "Time zone",
        "IANA time zone name for local times, e.g. Africa/Nairobi. Stored times carry offsets.",
        _timezone,
        default=_timezone_default,
        setting="device.timezone",
    ),
    # Camera height, tilt and heading are Camtrap DP deployment fields, not config keys: their
    # bounds are the standard's (tilt -90..90, heading 0..360) or plain sense.
    Question(
        "deployment.camera_height_m",
        "Camera height above ground (m)",
        "Height of the lens above the ground, in metres.",
        _number(Bounds(0, 30), "metres"),
        default=lambda a: 0.5,
    ),
    Question(
        "deployment.camera_tilt_deg",
        "Camera tilt (degrees)",
        "Angle from horizontal: 0 level, negative pointing down, -90 straight down.",
        _number(Bounds(-90, 90, integer=True), "degrees"),
        default=lambda a: 0,
    ),
    Question(
        "deployment.camera_heading_deg",
        "Camera heading (degrees)",
        "Compass direction the camera faces: 0 north, 90 east, 180 south, 270 west.",
        _number(Bounds(0, 360, integer=True), "degrees"),
        optional=True,
    ),
    Question(
        "deployment.habitat",
        "Habitat",
        "Short description, e.g. 'riverine woodland'. Blank for none.",
        _text,
        optional=True,
    ),
    Question(
        "deployment.bait_use",
        "Bait or lure used? (yes/no)",
        "Whether bait or a lure attracts animals to the camera.",
        _yes_no,
        default=lambda a: False,
    ),
    Question(
        "deployment.feature_type",
        "Feature type",
        "What the camera watches, Camtrap DP vocabulary: " + ", ".join(FEATURE_TYPES) + ".",
        _feature,
        optional=True,
    ),
    Question(
        "deployment.setup_by",
        "Set up by",
        "Name of the person setting up the trap (Camtrap DP setupBy).",
        _text,
        optional=True,
    ),
    Question(
        "deployment.deployment_id",
        "Deployment id",
        "Camtrap DP deploymentID; made from the device id and the start time if not given.",
        _text,
        optional=True,
        ask=False,
    ),
    Question(
        "pir.pin",
        "PIR sensor GPIO (BCM)",
        f"BCM GPIO number the PIR sensor's output is wired to ({_gpio_range('pir.pin')}).",
        _pir_pin,
        default=_setting_default("pir.pin"),
        setting="pir.pin",
    ),
    Question(
        "ir.pin",
        "IR LED GPIO (BCM, blank for none)",
        f"BCM GPIO number of the IR illuminator's enable line ({_gpio_range('ir.pin')}), blank "
        "if there is none.",
        _ir_pin,
        optional=True,
        setting="ir.pin",
    ),
    Question(
        "capture.burst_frames",
        "Frames per trigger",
        "How many photos each PIR trigger takes.",
        _setting_number("capture.burst_frames", "frames"),
        default=_setting_default("capture.burst_frames"),
        setting="capture.burst_frames",
    ),
    Question(
        "capture.cooldown_s",
        "Pause after a burst (s)",
        "Seconds after a burst before the next trigger counts.",
        _setting_number("capture.cooldown_s", "seconds"),
        default=_setting_default("capture.cooldown_s"),
        setting="capture.cooldown_s",
    ),
    Question(
        "capture.timelapse_interval_s",
        "Timelapse health frame every (s, 0 off)",
        "One frame at this interval proves the trap is alive even when nothing moves.",
        _setting_number("capture.timelapse_interval_s", "seconds"),
        default=_setting_default("capture.timelapse_interval_s"),
        setting="capture.timelapse_interval_s",
    ),
    Question(
        "registration.method",
        "Credentials: registry, import (USB) or keep",
        "registry: enrol online with a one-time token. import: certificate files from a USB "
        "stick. keep: the certificate this trap already has.",
        _method,
        default=lambda a: "keep" if a.get("_has_credentials") else "registry",
    ),
    Question(
        "registration.url",
        "Registry URL",
        "The fleet registry, e.g. https://registry.example.org:8443.",
        _url,
        when=_registry,
    ),
    Question(
        "registration.ca_file",
        "Fleet CA file to trust the registry (blank: system store)",
        "PEM file of the fleet CA, if the registry's certificate is not publicly trusted.",
        _path,
        optional=True,
        when=_registry,
    ),
    Question(
        "registration.token",
        "Enrolment token",
        "The one-time token from the office (camtrap-cloud registry token new).",
        _text,
        when=_registry,
    ),
    Question(
        "registration.import_dir",
        "Folder with the certificate files",
        "Holds ca.crt and <device id>.crt (or device.crt); see the field guide.",
        _path,
        when=_import,
    ),
    Question(
        "broker.host",
        "Broker host",
        "MQTT broker name or address (the registry supplies it when enrolling online).",
        _host,
        # No setting's default: the model's "localhost" is no broker for a trap in the field.
        default=lambda a: a.get("_broker_host"),
        when=lambda a: not _registry(a),
    ),
    Question(
        "broker.port",
        "Broker port",
        "MQTT over TLS port, usually 8883.",
        _setting_number("uplink.mqtt.port", ""),
        # The port of the broker this trap already uses, else the model's (MQTT over TLS).
        default=lambda a: a.get("_broker_port", config_field("uplink.mqtt.port").default),
        when=lambda a: not _registry(a),
        setting="uplink.mqtt.port",
    ),
    Question(
        "wifi.ssid",
        "Wi-Fi network name (blank to skip)",
        "A network the trap should join (NetworkManager keeps it). More in the answers file.",
        _ssid,
        optional=True,
    ),
    Question(
        "wifi.psk",
        "Wi-Fi passphrase",
        "The WPA passphrase of that network (8-63 characters).",
        _psk,
        when=lambda a: bool(a.get("wifi.ssid")),
    ),
)

BY_KEY = {q.key: q for q in QUESTIONS}
# Keys the answers file may hold besides the questions: raw config overrides and Wi-Fi lists.
EXTRA_KEYS = ("config", "wifi.networks", "broker.username", "broker.password")


def flatten(data: dict[str, Any]) -> Answers:
    """``{"deployment": {"latitude": 1}}`` -> ``{"deployment.latitude": 1}`` (one level)."""
    flat: Answers = {}
    for section, values in data.items():
        if section == "config":
            flat["config"] = values
        elif isinstance(values, dict):
            for name, value in values.items():
                flat[f"{section}.{name}"] = value
        else:
            flat[section] = values
    return flat


def load_answers_file(path: Path) -> Answers:
    """The answers file, flattened; ValueError naming the file when it cannot be used."""
    try:
        with path.open("rb") as fh:
            return flatten(tomllib.load(fh))
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not valid UTF-8 text (byte {exc.start})") from exc


def parse_set(items: list[str]) -> Answers:
    out: Answers = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected key=value")
        out[key.strip()] = value
    return out


def check_given(given: Answers) -> Answers:
    """Validate answers from a file or flags, in question order; every problem at once."""
    unknown = [k for k in given if k not in BY_KEY and k not in EXTRA_KEYS]
    problems = [f"{k}: unknown answer key" for k in unknown]
    answers: Answers = {k: given[k] for k in EXTRA_KEYS if k in given}
    for q in QUESTIONS:
        if q.key not in given:
            continue
        raw = given[q.key]
        if q.optional and (raw is None or str(raw).strip() == ""):
            answers[q.key] = None
            continue
        try:
            answers[q.key] = q.parse(raw, answers)
        except ValueError as exc:
            problems.append(f"{q.key}: {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    return answers


def complete(answers: Answers, context: Answers) -> tuple[Answers, list[str]]:
    """Fill defaults without asking; returns the answers and the keys still missing."""
    merged = {**context, **answers}
    missing = []
    for q in QUESTIONS:
        if q.key in merged or not q.when(merged):
            continue
        default = merged.get("_previous", {}).get(q.key, q.default(merged))
        if default is not None:
            merged[q.key] = q.parse(default, merged)
        elif q.optional or not q.ask:
            merged[q.key] = None
        else:
            missing.append(q.key)
    check_pins(merged)
    return merged, missing


def check_pins(answers: Answers) -> None:
    pir, ir = answers.get("pir.pin"), answers.get("ir.pin")
    if pir is not None and pir == ir:
        raise ValueError(f"ir.pin: GPIO {ir} is already the PIR pin; each pin can do one job")


def help_for(q: Question, answers: Answers) -> str:
    if q.key == "deployment.country":
        return _country_help(answers)
    if q.key == "device.timezone":
        return _timezone_help(answers)
    return q.help
