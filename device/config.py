"""The one configuration model of the agent.

Read from a TOML file (``/etc/camtrap/camtrap.toml``, or ``$CAMTRAP_CONFIG``) and
``CAMTRAP_*`` environment variables (``CAMTRAP_CAPTURE__BURST_FRAMES=5``); environment wins.
Every section forbids unknown keys, so a typo fails loudly instead of being ignored.
Fields marked ``remote=True`` may later be changed by a signed-in cloud operator (OTA issue);
credentials and trust anchors never are.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from device.contracts.calibration import Calibration
from device.contracts.errors import shown_path
from device.contracts.mappings import deep_merge
from device.contracts.pack import DEFAULT_PACK_DIR

DEFAULT_CONFIG_PATH = Path("/etc/camtrap/camtrap.toml")
ENV_PREFIX = "CAMTRAP_"


def remote(**kwargs: Any) -> Any:
    """A field the cloud may change through a desired-config message."""
    return Field(json_schema_extra={"remote": True}, **kwargs)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DeviceSection(Section):
    id: str = Field(
        "camtrap-dev",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Device id: MQTT client id and topic segment, EXIF BodySerialNumber.",
    )
    deployment_id: str = Field(
        "", max_length=128, description="Camtrap DP deploymentID; set by camtrap-provision."
    )
    timezone: str = Field("UTC", description="IANA zone for timestamps (always with offset).")
    make: str = Field("camtrap", description="EXIF Make.")
    model: str = Field("Raspberry Pi camera trap", description="EXIF Model.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value


class LocationSection(Section):
    latitude: float | None = Field(None, ge=-90, le=90, description="WGS84, decimal degrees.")
    longitude: float | None = Field(None, ge=-180, le=180, description="WGS84, decimal degrees.")
    coordinate_uncertainty_m: int | None = Field(None, ge=1, description="Metres.")
    country: str | None = Field(None, description="ISO 3166-1 alpha-3")
    admin1: str | None = Field(None, pattern=r"^[A-Z0-9]{1,3}$", description="USA state code")

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str | None) -> str | None:
        from device.countries import check_country

        # The same check as camtrap-provision's deployment.country answer.
        return None if value is None else check_country(value)


class StorageSection(Section):
    data_dir: Path = Field(Path("/var/lib/camtrap"), description="Media and the database.")
    fallback_dir: Path = Field(
        Path("/run/camtrap/fallback"),
        description="Where captures go while data_dir is unwritable (RAM on a Pi).",
    )
    fallback_max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="RAM the fallback spool may fill before it keeps metadata only.",
    )
    probe_interval_s: float = Field(5.0, gt=0, description="How often to retry data_dir.")
    commit_batch_max: int = Field(
        16, ge=1, le=1000, description="Most frames committed in one SQLite transaction."
    )
    media_quota_bytes: int = remote(
        default=0, ge=0, description="Most bytes of media kept; 0 means no quota."
    )
    min_free_bytes: int = remote(
        default=512 * 1024 * 1024, ge=0, description="Free space retention keeps on the card."
    )
    evict_below_confidence: float = remote(
        default=0.65, ge=0, le=1, description="Retention may evict unsent media below this."
    )
    outbox_done_retention_days: int = Field(
        30,
        ge=1,
        description="Upload records are deleted this long after ingest acknowledged them.",
    )


class PirSection(Section):
    pin: int = Field(17, ge=0, le=27, description="BCM GPIO number of the PIR output.")
    detect: Literal["edge", "sampled"] = remote(
        default="edge",
        description="edge: the pin's interrupt (no thread wakes while idle); sampled:"
        " gpiozero's MotionSensor, which reads the pin sample_rate times a second",
    )
    bounce_s: float = remote(
        default=0.02, ge=0, le=5, description="edge: edges closer than this are one edge"
    )
    queue_len: int = remote(
        default=1, ge=1, le=100, description="sampled: samples averaged per decision."
    )
    sample_rate: float = remote(
        default=50.0, gt=0, le=1000, description="sampled: samples per second."
    )
    threshold: float = remote(
        default=0.5, gt=0, lt=1, description="sampled: share of samples high."
    )
    pin_factory: Literal["auto", "mock"] = Field(
        "auto", description='"mock" uses gpiozero\'s MockFactory (simulation, tests).'
    )


class CameraSection(Section):
    backend: Literal["picamera2", "replay", "synthetic"] = Field(
        "picamera2", description="replay and synthetic are for simulation and tests."
    )
    main_size: tuple[int, int] = Field((2304, 1296), description="Stored JPEG size (w, h).")
    lores_size: tuple[int, int] = Field((320, 240), description="Analysis frame size (w, h).")
    jpeg_quality: int = remote(default=90, ge=10, le=100)
    replay_dir: Path | None = Field(None, description="JPEG directory for the replay backend.")
    synthetic_seed: int = Field(0, description="Seed of the synthetic scene sequence.")

    @field_validator("main_size", "lores_size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] <= 0 or value[1] <= 0 or value[0] % 2 or value[1] % 2:
            raise ValueError("width and height must be positive even numbers")
        return value


class IrSection(Section):
    pin: int | None = Field(None, ge=0, le=27, description="BCM GPIO of the IR LED driver.")
    mode: Literal["auto", "on", "off", "schedule"] = remote(default="auto")
    dark_threshold: float = remote(default=40.0, ge=0, le=255, description="mean lores luma")
    schedule_on: str = remote(default="18:00", pattern=r"^\d\d:\d\d$")
    schedule_off: str = remote(default="06:00", pattern=r"^\d\d:\d\d$")


def _check_windows(value: list[str]) -> list[str]:
    from device.contracts.windows import parse_windows

    parse_windows(value)  # WindowError is a ValueError: pydantic names the key
    return value


PowerProfile = Literal["always-ready", "low-power", "scheduled"]
Board = Literal["auto", "zero2w", "pi3", "pi4", "pi5"]


class PowerSection(Section):
    """Power profiles (docs/power.md): what the camera and the CPU do between events."""

    profile: PowerProfile = remote(
        default="always-ready",
        description="always-ready: the camera streams (lowest trigger latency); low-power: the"
        " camera starts on the PIR edge and stops after the event; scheduled: the camera runs"
        " only inside capture_windows",
    )
    capture_windows: list[str] = remote(
        default=["18:00-06:00"],
        description="scheduled: local-time windows HH:MM-HH:MM (across midnight allowed) when"
        " the trap captures",
    )
    timelapse_outside_windows: bool = remote(
        default=False,
        description="scheduled: also take timelapse health frames outside the windows (the"
        " camera starts for each)",
    )
    camera_linger_s: float = remote(
        default=10.0,
        ge=0,
        le=3600,
        description="low-power and scheduled: the camera stays on this long after an event's"
        " last frame, for a retrigger",
    )
    analysis_interval_s: float = remote(
        default=600.0,
        ge=0,
        le=86400,
        description="How often a lores frame is analysed between events for the IR and light"
        " decisions (always-ready with an auto IR light only); 0: only frames of events",
    )
    board: Board = Field(
        "auto", description="The board, for the energy budget; auto reads the device tree"
    )
    battery_wh: float = Field(
        100.0, gt=0, le=100000, description="Usable battery capacity for camtrap energy"
    )

    _windows = field_validator("capture_windows")(_check_windows)


class BatterySection(Section):
    """The battery gauge and low-battery shedding (docs/power.md). Each step sheds at its
    threshold (percent of charge) and is walked back once the charge is recover_margin_pct
    above it; a threshold of 0 turns its step off."""

    gauge: Literal["none", "ina219", "ina260", "sysfs"] = Field(
        "none", description="ina219/ina260 over I2C (smbus2); sysfs: a power_supply node"
    )
    i2c_bus: int = Field(1, ge=0, le=255, description="/dev/i2c-N")
    i2c_address: int = Field(0x40, ge=0x03, le=0x77, description="The gauge's I2C address")
    shunt_ohms: float = Field(0.1, gt=0, le=10, description="ina219: the shunt resistor")
    sysfs_root: Path = Field(
        Path("/sys/class/power_supply"), description="Where power_supply nodes live"
    )
    supply: str = Field(
        "", description="The power_supply node's name; empty: the first with a capacity"
    )
    empty_v: float = Field(3.3, gt=0, le=100, description="Pack voltage at 0% (INA gauges)")
    full_v: float = Field(4.2, gt=0, le=100, description="Pack voltage at 100% (INA gauges)")
    poll_interval_s: float = Field(60.0, ge=1, le=3600, description="How often it is read")
    stop_blank_media_pct: float = remote(
        default=40.0, ge=0, le=100, description="Below this, blank media is not sent"
    )
    stop_classifying_pct: float = remote(
        default=25.0, ge=0, le=100, description="Below this, events queue unclassified"
    )
    stop_timelapse_pct: float = remote(
        default=15.0, ge=0, le=100, description="Below this, no timelapse frames"
    )
    shutdown_pct: float = remote(
        default=5.0, ge=0, le=100, description="Below this, the agent stops and halts the Pi"
    )
    recover_margin_pct: float = remote(
        default=5.0, ge=0, le=50, description="A step is walked back this far above it"
    )
    shutdown_command: list[str] = Field(
        ["systemctl", "poweroff"], description="Run after a clean stop at shutdown_pct"
    )

    @model_validator(mode="after")
    def _steps_in_order(self) -> BatterySection:
        steps = [
            self.stop_blank_media_pct,
            self.stop_classifying_pct,
            self.stop_timelapse_pct,
            self.shutdown_pct,
        ]
        if steps != sorted(steps, reverse=True):
            raise ValueError(
                "stop_blank_media_pct >= stop_classifying_pct >= stop_timelapse_pct >="
                " shutdown_pct is required"
            )
        if self.empty_v >= self.full_v:
            raise ValueError("empty_v must be below full_v")
        return self


class WakeSection(Section):
    """Sleeping the trap between scheduled windows (docs/power.md)."""

    mode: Literal["none", "rtc", "controller"] = Field(
        "none",
        description="rtc: set the RTC wake alarm and halt (Pi 5, POWER_OFF_ON_HALT=1);"
        " controller: write the schedule file an external power controller reads",
    )
    rtc_wakealarm: Path = Field(Path("/sys/class/rtc/rtc0/wakealarm"))
    controller_file: Path = Field(
        Path("/var/lib/camtrap/wake-schedule.json"),
        description="controller: the schedule file (next off and on times)",
    )
    min_sleep_s: float = Field(
        1800.0, ge=60, description="Sleep only when the sleep would last at least this long"
    )
    lead_s: float = Field(120.0, ge=0, le=3600, description="Wake this long before a window")
    halt_command: list[str] = Field(["systemctl", "poweroff"], description="rtc: the halt")


class CaptureSection(Section):
    burst_frames: int = remote(default=3, ge=1, le=100, description="Frames per trigger.")
    burst_interval_s: float = remote(default=0.5, ge=0, le=60, description="Between frames.")
    max_burst_frames: int = remote(
        default=10, ge=1, le=1000, description="Cap on a burst extended by retriggers."
    )
    cooldown_s: float = remote(
        default=5.0, ge=0, le=3600, description="After a burst, before the next may start."
    )
    timelapse_interval_s: float = remote(
        default=3600.0, ge=0, description="0 turns timelapse health frames off"
    )


class ClockSection(Section):
    timesync_flag: Path = Field(
        Path("/run/systemd/timesync/synchronized"), description="Exists once timesyncd synced."
    )
    rtc_device: Path = Field(Path("/sys/class/rtc/rtc0"), description="Present with an RTC.")
    manual_marker: Path = Field(
        Path("/var/lib/camtrap/clock-manual"),
        description="Written by camtrap-provision when a technician set the time by hand.",
    )
    kernel_status: bool = Field(True, description="Trust adjtimex(2) as an NTP sync signal.")
    refresh_s: float = Field(60.0, gt=0, description="How often the clock state is re-read.")


class LogSection(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = remote(default="INFO")
    format: Literal["json", "text"] = Field("json", description="json: one object per line.")


class VisionSection(Section):
    """On-device classification and the blank filter (docs/vision.md explains each number).

    Thresholds left unset (None) come from the model pack's manifest, then from built-in
    defaults; a value set here overrides the pack.
    """

    enabled: bool = remote(default=True)
    pack: Path = Field(DEFAULT_PACK_DIR, description="Model pack directory or .tar")
    threads: int = Field(1, ge=1, le=8, description="Interpreter threads; 1 leaves cores free")
    self_test: bool = Field(True, description="Run the pack's golden images when it is loaded")
    species_threshold: float | None = remote(default=None, ge=0, le=1)
    rollup_threshold: float | None = remote(default=None, ge=0, le=1)
    blank_threshold: float | None = remote(default=None, ge=0, le=1)
    animal_threshold: float | None = remote(
        default=None, ge=0, le=1, description="least summed probability to name a type"
    )
    geofence: bool = remote(default=True)
    top_k: int = Field(5, ge=1, le=20)
    blank_media_policy: Literal["defer", "keep", "thumbnail", "delete"] = remote(
        default="defer",
        description="What a blank verdict does to the frames (docs/vision.md); defer destroys"
        " nothing",
    )
    target_recall: float = remote(
        default=0.98,
        ge=0.5,
        le=0.99,
        description="Share of not-blank events the blank threshold keeps, at 95% confidence;"
        " picks the calibration table's row (docs/vision.md)",
    )
    calibration_file: Path | None = Field(
        None,
        description="Deployment calibration (camtrap calibrate --out); overrides the pack's",
    )
    calibration: Calibration | None = remote(
        default=None,
        description="Deployment calibration table pushed by remote config (the JSON that"
        " camtrap calibrate writes); overrides calibration_file and the pack's",
    )
    sequence_cutoff_s: float = Field(
        60.0,
        gt=0,
        le=86400,
        description="eval/calibrate --events: photos this close in time (EXIF) are one event"
        " (camtrap import has its own, import.sequence_gap_s)",
    )
    info_bar: Literal["none", "band", "auto"] = remote(
        default="auto", description="The camera's burnt-in data strip: none, band (below), auto"
    )
    info_bar_top: float = remote(default=0.0, ge=0, le=0.25, description="band: share of height")
    info_bar_bottom: float = remote(default=0.0, ge=0, le=0.25, description="band: share of height")
    site_memory: bool = remote(default=True, description="Remember the empty scene (novelty)")
    site_memory_size: int = Field(2000, ge=0, le=20000, description="Embeddings remembered")
    tiles: bool = remote(default=True, description="Also classify overlapping tiles")
    tile_fraction: float = remote(default=0.6, gt=0.2, le=1.0, description="tile side / short side")
    tile_overlap: float = remote(default=0.25, ge=0, lt=0.9)
    max_tiles: int = remote(default=8, ge=0, le=32)
    motion_crop: bool = remote(default=True, description="Also classify the largest motion blob")
    motion_weight: float = remote(default=0.8, ge=0, le=1)
    motion_min_area: float = remote(
        default=0.002, gt=0, lt=1, description="blob area (share of frame) where evidence starts"
    )
    motion_full_area: float = remote(
        default=0.02, gt=0, le=1, description="blob area at which motion evidence is full"
    )
    motion_sigma: float = remote(default=4.0, gt=0, description="noise sigmas for a changed cell")
    background_alpha: float = remote(default=0.2, gt=0, le=1)


class OtaSection(Section):
    """Signed over-the-air model updates and remote configuration (docs/ota.md). Nothing
    here is remote-changeable: the cloud must never choose which keys the device trusts."""

    enabled: bool = Field(True, description="Act on desired-model/config and command messages")
    trusted_keys: list[str] = Field(
        default_factory=list,
        description="Ed25519 public keys: file paths (PEM or base64) or inline base64 (32 bytes)",
    )
    trusted_keys_dir: Path = Field(
        Path("/usr/share/camtrap/ota-keys"),
        description="Every *.pub in it is trusted too (keys shipped with the package)",
    )
    models_dir: Path | None = Field(
        None, description="Installed packs and the current symlink; unset: <data_dir>/models"
    )
    download_dir: Path | None = Field(
        None, description="Resumable partial downloads; unset: <models_dir>/.incoming"
    )
    trial_inferences: int = Field(
        20, ge=0, le=100000, description="Events a new pack must classify before it is trusted"
    )
    download_timeout_s: float = Field(30.0, gt=0, description="Per HTTP request")
    download_retries: int = Field(5, ge=0, le=1000, description="Resumed attempts per file")
    ca_file: Path | None = Field(
        None, description="CA for HTTPS pack downloads; unset: the system trust store"
    )


class MqttSection(Section):
    host: str = "localhost"
    port: int = Field(8883, ge=1, le=65535)
    tls: bool = True
    ca_file: Path | None = Field(None, description="Fleet CA; None uses the system trust store.")
    cert_file: Path | None = Field(None, description="Device certificate (CN = device id).")
    key_file: Path | None = None
    username: str | None = Field(None, description="Only for password auth, over TLS.")
    password: SecretStr | None = None
    keepalive_s: int = Field(60, ge=5, le=65535)
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0, description="Broker keeps our session.")
    connect_timeout_s: float = Field(15.0, gt=0)


class PubSubSection(Section):
    project: str = ""
    topic: str = "camtrap-up"
    credentials_file: Path | None = Field(None, description="Service-account key file.")
    flow_max_messages: int = Field(100, ge=1)
    flow_max_bytes: int = Field(32 * 1024 * 1024, ge=1024)


class UplinkSection(Section):
    transport: Literal["mqtt", "pubsub", "none"] = "mqtt"
    max_payload_bytes: int = remote(
        default=1024 * 1024,
        ge=4096,
        description="Cap on one message; the broker's announced maximum may lower it further.",
    )
    link_type: Literal["auto", "wifi", "metered"] = remote(
        default="auto", description="auto asks NetworkManager; wifi/metered override it."
    )
    network_manager: bool = Field(True, description="Ask nmcli whether a network is up.")
    metered_policy: Literal["metadata", "thumbnails", "all"] = remote(
        default="metadata", description="What goes over a metered (cellular) link."
    )
    daily_byte_budget: int = remote(
        default=0, ge=0, description="Bytes a day before only metadata goes; 0: no budget."
    )
    window_items: int = Field(256, ge=1, le=10000, description="Items in flight at once.")
    window_bytes: int = Field(32 * 1024 * 1024, ge=4096, description="Unacked bytes in flight.")
    ack_timeout_s: float = Field(60.0, gt=0, description="Silence before an item is retried.")
    sync_windows: list[str] = remote(
        default=[],
        description="Local-time windows HH:MM-HH:MM when the trap connects and sends; empty:"
        " whenever a network is up",
    )
    radio_control: Literal["none", "nmcli", "dry-run"] = Field(
        "none",
        description="nmcli: switch the radio off while offline outside sync windows; dry-run:"
        " log the nmcli commands instead of running them",
    )
    radio: Literal["wifi", "wwan", "all"] = Field(
        "wifi", description="Which radio nmcli switches (nmcli radio wifi|wwan|all)"
    )
    mqtt: MqttSection = MqttSection()
    pubsub: PubSubSection = PubSubSection()

    _windows = field_validator("sync_windows")(_check_windows)


class TelemetrySection(Section):
    interval_s: float = remote(default=3600.0, ge=1, description="Heartbeat period.")
    thermal_dir: Path = Field(Path("/sys/class/thermal"), description="thermal_zone*/temp")
    uptime_file: Path = Field(Path("/proc/uptime"))


# Where camtrap-card@.service mounts a card (``camtrap card mount``'s default too).
CARDS_DIR = Path("/run/camtrap/cards")


class ImportSection(Section):
    """Photos from a trail camera's card or a folder (``camtrap import``, docs/trail-cameras.md)."""

    sequence_gap_s: float = Field(
        60.0,
        gt=0,
        le=86400,
        description="Photos of one camera this close in time are one event, when the camera"
        " records no sequence of its own (Agouti's sequence cutoff)",
    )
    max_event_s: float = Field(
        900.0,
        gt=0,
        le=86400,
        description="An event is cut after this long, so an animal grazing for an hour is"
        " several events",
    )
    max_event_frames: int = Field(
        100, ge=1, le=1000, description="An event is cut after this many photos"
    )
    batch_photos: int = Field(
        50, ge=1, le=1000, description="Photos stored per database commit while importing"
    )
    watch: bool = Field(False, description="The agent imports every card mounted under watch_roots")
    watch_roots: list[Path] = Field(
        [CARDS_DIR],
        description="Where cards are mounted (read-only, by the camtrap-card udev rule)",
    )
    watch_interval_s: float = Field(
        5.0, gt=0, le=3600, description="How often the agent looks for a new card"
    )


class SecretsSection(Section):
    """Secrets (passwords) kept apart from this file, so it can be shown and copied freely."""

    file: Path | None = Field(
        None, description="TOML file, mode 0600, same sections; merged over this file."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    device: DeviceSection = DeviceSection()
    location: LocationSection = LocationSection()
    storage: StorageSection = StorageSection()
    pir: PirSection = PirSection()
    camera: CameraSection = CameraSection()
    ir: IrSection = IrSection()
    capture: CaptureSection = CaptureSection()
    clock: ClockSection = ClockSection()
    log: LogSection = LogSection()
    uplink: UplinkSection = UplinkSection()
    telemetry: TelemetrySection = TelemetrySection()
    vision: VisionSection = VisionSection()
    ota: OtaSection = OtaSection()
    power: PowerSection = PowerSection()
    battery: BatterySection = BatterySection()
    wake: WakeSection = WakeSection()
    # ``import`` is a Python keyword: the field is ``import_``, the file and the environment
    # say ``[import]`` and ``CAMTRAP_IMPORT__*`` (pydantic-settings skips the prefix for an
    # alias, so the prefixed name is an alias too).
    import_: ImportSection = Field(
        default_factory=ImportSection,
        validation_alias=AliasChoices("camtrap_import", "import"),
        serialization_alias="import",
    )
    secrets: SecretsSection = SecretsSection()

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        """As the file spells it (``import``, not ``import_``), so a dump loads back."""
        kwargs.setdefault("by_alias", True)
        return super().model_dump(**kwargs)

    def model_dump_json(self, **kwargs: Any) -> str:
        kwargs.setdefault("by_alias", True)
        return super().model_dump_json(**kwargs)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's contents arrive as init kwargs; the environment overrides the file.
        return (env_settings, init_settings)


class ConfigError(Exception):
    """A configuration problem, phrased as one line that names the key and its source."""


def config_path_from_env() -> Path:
    return Path(os.environ.get(f"{ENV_PREFIX}CONFIG", str(DEFAULT_CONFIG_PATH)))


def _exists(path: Path) -> bool:
    """``Path.exists`` raises on some errors (a name too long); read_toml then says which."""
    try:
        return path.exists()
    except OSError:
        return True


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except PermissionError as exc:
        raise ConfigError(f"{path}: not readable ({exc.strerror})") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 text") from exc
    except OSError as exc:  # a name too long, an I/O error on a failing card
        raise ConfigError(f"{shown_path(path)}: cannot read ({exc.strerror or exc})") from exc


def _env_name(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc)


def _in_mapping(data: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    node: Any = data
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def env_source(loc: tuple[Any, ...]) -> str | None:
    """The ``CAMTRAP_*`` variable that set the value at ``loc``, if one did.

    Variable names are matched without regard to case (as pydantic-settings reads them), and
    a variable may set a whole section as JSON (``CAMTRAP_CAPTURE='{"burst_frames": 0}'``):
    the longest matching name wins.
    """
    names = {name.upper(): name for name in os.environ if name.upper().startswith(ENV_PREFIX)}
    for end in range(len(loc), 0, -1):
        found = names.get(_env_name(loc[:end]).upper())
        if found is not None:
            return found
    return None


def describe_validation_error(exc: ValidationError, data: dict[str, Any], source: str) -> str:
    """First error as ``source: key: message``; the env var (it wins) or the file is named."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(err["loc"])
    key = ".".join(str(part) for part in loc) or "(top level)"
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    variable = env_source(loc)
    where = f"environment variable {variable}" if variable else None
    if where is None and (_in_mapping(data, loc) or err["type"] == "extra_forbidden"):
        where = source
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where or source}: {key}: {message}{suffix}"


def merge_secrets(data: dict[str, Any], secrets_path: Path) -> dict[str, Any]:
    """``data`` with the secrets file's sections merged in (the secrets file wins).

    Secrets live apart so the main file can be shown, copied and diffed freely; a secrets file
    others can read is refused rather than trusted.
    """
    try:
        mode = secrets_path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{secrets_path}: secrets file not readable ({exc.strerror})") from exc
    if mode & 0o077:
        raise ConfigError(f"{secrets_path}: secrets file must be mode 0600, is {mode & 0o777:o}")

    return deep_merge(data, read_toml(secrets_path))


def load_settings(path: Path | None = None, *, require_file: bool = False) -> Settings:
    """Load and validate the configuration.

    A missing file at the default location means "all defaults" unless ``require_file``;
    a missing file named explicitly (argument or ``$CAMTRAP_CONFIG``) is an error.
    """
    explicit = path is not None or f"{ENV_PREFIX}CONFIG" in os.environ
    path = path or config_path_from_env()
    data: dict[str, Any] = {}
    # Without a file, a bad value can only have come from the environment or the defaults:
    # never name a file that was not read.
    source = "the environment (no config file)"
    if explicit or require_file or _exists(path):
        data = read_toml(path)
        source = str(path)
    secrets_file = data.get("secrets", {}).get("file") if isinstance(data, dict) else None
    if secrets_file:
        data = merge_secrets(data, Path(secrets_file))
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, data, source)) from exc


SECRET_MASK = "********"


def key_of(name: str, info: FieldInfo) -> str:
    """The key a field has in the file (``import`` for ``import_``)."""
    return info.serialization_alias or name


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as plain data, with every secret replaced by a mask."""

    def walk(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return SECRET_MASK if value.get_secret_value() else ""
        if isinstance(value, BaseModel):
            return {
                key_of(name, info): walk(getattr(value, name))
                for name, info in type(value).model_fields.items()
            }
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple | list):
            return [walk(v) for v in value]
        return value

    return walk(settings)


def to_toml(data: dict[str, Any]) -> str:
    """Render plain settings data as TOML; unset (None) values are left out, as TOML has no null."""
    import tomli_w

    def prune(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: prune(v) for k, v in value.items() if v is not None}
        return value

    return tomli_w.dumps(prune(data))


def reference_markdown() -> str:
    """Every key with its type, default and meaning: the source of docs/configuration.md."""
    lines = [
        "# Configuration reference",
        "",
        "Generated by `camtrap config reference`; a test keeps this file in step with the code.",
        "",
        "The agent reads `/etc/camtrap/camtrap.toml` (or `$CAMTRAP_CONFIG`). Any key can be "
        "overridden by an environment variable: `[capture] burst_frames` is "
        "`CAMTRAP_CAPTURE__BURST_FRAMES`. Unknown keys are errors. Keys marked *remote* may "
        "also be changed by a signed desired-config message from the cloud; credentials and "
        "trust keys never can.",
        "",
    ]
    for field_name, section_field in Settings.model_fields.items():
        model = section_field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        lines += [f"## [{key_of(field_name, section_field)}]", ""]
        if model.__doc__ and model.__doc__ != Section.__doc__:
            lines += [" ".join(model.__doc__.split()), ""]
        lines += ["| key | type | default | remote | meaning |", "| --- | --- | --- | --- | --- |"]
        for name, info in model.model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            default = info.get_default(call_default_factory=True)
            if isinstance(default, SecretStr):
                default = "(secret)"
            kind = str(info.annotation).replace("typing.", "").replace("pathlib.", "")
            kind = kind.replace("<class '", "").replace("'>", "").replace("|", "or")
            # Paths inside the installed package differ per machine; show them relatively.
            text = str(default).replace(str(Path(__file__).resolve().parent), "<package>")
            shown = "unset" if default is None else f"`{text}`"
            lines.append(
                f"| `{name}` | {kind} | {shown} | {'yes' if extra.get('remote') else ''} "
                f"| {(info.description or '').replace('|', '/')} |"
            )
        lines.append("")
    return "\n".join(lines)
