"""The camtrap wire protocol, version 1: the one definition both the device and the cloud use.

Every message is a pydantic model with ``v`` (the protocol version) and ``type``. JSON field
names are Camtrap DP's camelCase (``mediaID``, ``eventStart``, ``classificationProbability``);
Python attributes are their snake_case twins. Media travel as binary chunk frames, not base64:

    b"CTC1" | header length (uint16, big endian) | header JSON (UTF-8) | raw chunk bytes

so a 200 KB thumbnail costs a few hundred bytes of header, not a third more payload.
``docs/protocol.md`` is the prose version of this module; keep them in step. The vocabulary
types (``CaptureMethod``, ``TriggerSource``, ``ObservationType``, ...) are the ones the device
uses inside too, so a value that could not travel is a type error before it is a wire error.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from device.contracts.hashing import sha256_hex

__all__ = [
    "CAPTURE_VERSION",
    "CHUNK_HEADER_MAX",
    "CHUNK_MAGIC",
    "DOWN_SUFFIXES",
    "DOWN_SUFFIX_OF",
    "JSON_MESSAGE_MAX",
    "PROTOCOL_VERSION",
    "PUBSUB_MAX_ATTRIBUTES",
    "PUBSUB_MAX_ATTRIBUTE_KEY",
    "PUBSUB_MAX_ATTRIBUTE_VALUE",
    "SHA256_RE",
    "TELEMETRY_POWER_VERSION",
    "TELEMETRY_VERSION",
    "TOPIC_ROOT",
    "UP_SUFFIXES",
    "UP_SUFFIX_OF",
    "Ack",
    "AckBatch",
    "AckEntry",
    "CameraInfo",
    "CaptureMeta",
    "CaptureMethod",
    "ClassificationMethod",
    "Command",
    "DesiredConfig",
    "DesiredModel",
    "DeviceEvent",
    "DeviceId",
    "DownMessage",
    "Envelope",
    "ErrorReply",
    "Event",
    "Ident",
    "ImportInfo",
    "Media",
    "MediaChunk",
    "MediaKind",
    "Message",
    "Observation",
    "ObservationLevel",
    "ObservationType",
    "PackName",
    "PackVersion",
    "ProtocolError",
    "Severity",
    "Sha256",
    "Status",
    "TaxonLevel",
    "Telemetry",
    "TriggerSource",
    "Unit",
    "UpMessage",
    "WireModel",
    "check_pubsub_attributes",
    "chunk_overhead",
    "decode",
    "down_topic",
    "encode",
    "pack_acks",
    "parse_topic",
    "pubsub_attributes",
    "split_media",
    "topic_for",
    "up_topic",
    "utc_now",
]

PROTOCOL_VERSION: Final = 1
# Message types that also speak a later version (each type's own ``v``): ingest accepts both,
# devices send the later one once ingest is upgraded (docs/protocol.md, "Versioning rule").
TELEMETRY_VERSION: Final = 2
# Telemetry v3: the power figures (profile, battery, shedding, energy counters).
TELEMETRY_POWER_VERSION: Final = 3
CAPTURE_VERSION: Final = 2
_LATER_VERSIONS: Final = {
    "telemetry": (1, TELEMETRY_VERSION, TELEMETRY_POWER_VERSION),
    "capture": (1, CAPTURE_VERSION),
}
TOPIC_ROOT = "camtrap"
CHUNK_MAGIC = b"CTC1"
_CHUNK_PREFIX = struct.Struct(">4sH")
CHUNK_HEADER_MAX = 2048
# A JSON message bigger than this is refused before parsing: metadata for a 1000-frame burst
# stays far below it, and a hostile peer cannot make the parser allocate without bound.
JSON_MESSAGE_MAX = 4 * 1024 * 1024
SHA256_RE = r"^[0-9a-f]{64}$"

UP_SUFFIXES = ("meta", "media", "telemetry", "status", "event")
DOWN_SUFFIXES = ("ack", "config", "model", "command")


class ProtocolError(ValueError):
    """A payload that is not a valid v1 message. ``reason`` is a short stable code for counters."""

    def __init__(self, reason: str, detail: str = "", header: MediaChunk | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        # A chunk whose header was valid but whose bytes were not: the sender can be told.
        self.header = header


def _wire_name(name: str) -> str:
    # snake_case -> Camtrap DP camelCase, with the standard's "ID" spelling (mediaID, eventID).
    first, *rest = name.split("_")
    camel = first + "".join(part[:1].upper() + part[1:] for part in rest)
    return camel[:-2] + "ID" if camel.endswith("Id") else camel


class WireModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=_wire_name, populate_by_name=True
    )


DeviceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
# Ids end up in topics, file names and Pub/Sub attributes: no slashes, wildcards or spaces.
# It starts with a letter or digit so "." and ".." can never become a path.
Ident = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")
]
Sha256 = Annotated[str, Field(pattern=SHA256_RE)]
Unit = Annotated[float, Field(ge=0, le=1)]
CaptureMethod = Literal["activityDetection", "timeLapse"]
# "unknown": a JPEG found on the card without its row or its EXIF record, re-registered at
# start-up (device/store/store.py): the capture is kept and sent, its trigger is not known.
TriggerSource = Literal["pir", "timelapse", "manual", "test", "unknown"]
ObservationLevel = Literal["media", "event"]
ObservationType = Literal["animal", "human", "vehicle", "blank", "unknown", "unclassified"]
TaxonLevel = Literal["species", "genus", "family", "order", "class", "kingdom"]
ClassificationMethod = Literal["human", "machine"]
MediaKind = Literal["thumbnail", "full"]
Severity = Literal["info", "warning", "error"]
PowerProfile = Literal["always-ready", "low-power", "scheduled"]
# A CPU room: the agent's rooms by thread (device/power/cpu.py), "other" for the rest.
Room = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z_]+$")]
# The low-battery shedding steps in the order they are taken; level N: the first N in force.
# device.power.report.SHED_STEPS is the agent's copy; a test keeps them equal.
SHED_STEPS: Final = ("blank_media", "classify", "timelapse", "shutdown")


class Envelope(WireModel):
    v: Literal[1] = PROTOCOL_VERSION
    device_id: DeviceId


class CameraInfo(WireModel):
    """The camera that took an imported event (EXIF Make/Model/serial, the ``--camera`` name).
    Absent for the trap's own captures: the device registry describes the trap."""

    make: str | None = Field(None, max_length=64)
    model: str | None = Field(None, max_length=64)
    serial: str | None = Field(None, max_length=64)
    name: str | None = Field(None, max_length=64)


class ImportInfo(WireModel):
    """Where an imported event came from (``camtrap import``, docs/trail-cameras.md)."""

    import_id: Ident
    source: str = Field(max_length=255)  # the card's volume label or the folder's name
    # The clock correction applied to every timestamp of the import (the original EXIF time is
    # kept in each media's exifData); 0 when none was given.
    clock_offset_s: float = Field(0.0, ge=-10 * 366 * 86400, le=10 * 366 * 86400)


class Event(WireModel):
    event_id: Ident
    deployment_id: Ident
    capture_method: CaptureMethod
    trigger_source: TriggerSource
    event_start: AwareDatetime
    event_end: AwareDatetime | None = None
    frame_count: int = Field(ge=0)
    clock_source: str = Field(max_length=64)
    clock_synced: bool
    blank_score: Unit | None = None
    camera: CameraInfo | None = None
    imported: ImportInfo | None = None


class Media(WireModel):
    media_id: Ident
    event_id: Ident
    deployment_id: Ident
    seq: int = Field(ge=0)
    capture_method: CaptureMethod
    timestamp: AwareDatetime
    file_name: str = Field(min_length=1, max_length=255, pattern=r"^[^/\\\x00]+$")
    file_mediatype: str = Field("image/jpeg", pattern=r"^[a-z]+/[a-z0-9.+-]+$")
    sha256: Sha256 | None = None
    size: int | None = Field(None, ge=0)
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    exif_data: dict[str, Any] | None = None
    clock_source: str = Field(max_length=64)
    clock_synced: bool
    ir_on: bool = False


class Observation(WireModel):
    observation_id: Ident
    deployment_id: Ident
    event_id: Ident
    media_id: Ident | None = None
    event_start: AwareDatetime
    event_end: AwareDatetime
    observation_level: ObservationLevel
    observation_type: ObservationType
    scientific_name: str | None = Field(None, max_length=255)
    common_name: str | None = Field(None, max_length=255)
    taxon_level: TaxonLevel | None = None
    taxonomy: str | None = Field(None, max_length=512)
    count: int | None = Field(None, ge=1)
    bbox_x: Unit | None = None
    bbox_y: Unit | None = None
    bbox_width: Unit | None = None
    bbox_height: Unit | None = None
    classification_method: ClassificationMethod = "machine"
    classified_by: str | None = Field(None, max_length=255)
    classification_timestamp: AwareDatetime | None = None
    classification_probability: Unit | None = None
    blank_score: Unit | None = None
    details: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _level_matches_media(self) -> Observation:
        if (self.observation_level == "media") != (self.media_id is not None):
            raise ValueError("observationLevel 'media' needs a mediaID and 'event' must not")
        return self


class CaptureMeta(Envelope):
    """One burst: the event, its frames and the machine observations. Topic ``up/meta``."""

    type: Literal["capture"] = "capture"
    # v2 (docs/protocol.md, "Versioning rule"): ``event.camera`` and ``event.imported``, the
    # trail-camera import's facts. A capture without them stays v1, so a trap's own captures
    # still reach an ingest that speaks only v1.
    v: Literal[1, 2] = PROTOCOL_VERSION  # type: ignore[assignment]
    item_id: Ident
    sent_at: AwareDatetime | None = None
    event: Event
    media: list[Media] = Field(default_factory=list, max_length=1000)
    observations: list[Observation] = Field(default_factory=list, max_length=5000)

    @model_validator(mode="before")
    @classmethod
    def _lowest_version_that_holds_it(cls, data: Any) -> Any:
        # Built in code without a ``v`` (the device's uplink): an imported event needs v2.
        # Off the wire ``v`` is always there (decode refuses a message without it).
        if isinstance(data, dict) and "v" not in data and _has_import_facts(data.get("event")):
            return {**data, "v": CAPTURE_VERSION}
        return data

    @model_validator(mode="after")
    def _v1_has_no_import_facts(self) -> CaptureMeta:
        if self.v == 1 and _has_import_facts(self.event):
            raise ValueError("event.camera/event.imported need v=2")
        return self

    @model_validator(mode="after")
    def _one_event(self) -> CaptureMeta:
        ev = self.event
        rows: list[Media | Observation] = [*self.media, *self.observations]
        for row in rows:
            if row.event_id != ev.event_id or row.deployment_id != ev.deployment_id:
                raise ValueError("every media and observation must belong to the message's event")
        media_ids = {m.media_id for m in self.media}
        if len(media_ids) != len(self.media):
            raise ValueError("duplicate mediaID in one message")
        for obs in self.observations:
            if obs.media_id is not None and obs.media_id not in media_ids:
                raise ValueError(f"observation {obs.observation_id} names an unknown mediaID")
        return self


def _has_import_facts(event: Any) -> bool:
    if isinstance(event, Event):
        return event.camera is not None or event.imported is not None
    if isinstance(event, dict):
        return event.get("camera") is not None or event.get("imported") is not None
    return False


class MediaChunk(Envelope):
    """One slice of a media file. Topic ``up/media``; travels as a binary frame, not JSON."""

    type: Literal["chunk"] = "chunk"
    item_id: Ident
    media_id: Ident
    kind: MediaKind
    file_mediatype: str = Field("image/jpeg", pattern=r"^[a-z]+/[a-z0-9.+-]+$")
    index: int = Field(ge=0)
    count: int = Field(ge=1, le=1_000_000)
    chunk_size: int = Field(ge=1, description="nominal size; offset = index * chunkSize")
    total_size: int = Field(ge=0)
    sha256: Sha256 = Field(description="of the whole file")
    chunk_sha256: Sha256
    data: bytes = Field(default=b"", exclude=True, repr=False)

    @model_validator(mode="after")
    def _consistent(self) -> MediaChunk:
        if self.index >= self.count:
            raise ValueError("index must be below count")
        expected_count = max(1, -(-self.total_size // self.chunk_size))
        if self.count != expected_count:
            raise ValueError(f"count {self.count} does not fit totalSize and chunkSize")
        return self

    @property
    def offset(self) -> int:
        return self.index * self.chunk_size

    @property
    def expected_length(self) -> int:
        return max(0, min(self.chunk_size, self.total_size - self.offset))


class Telemetry(Envelope):
    """Heartbeat. Topic ``up/telemetry``. Every figure is optional: report what you can read."""

    type: Literal["telemetry"] = "telemetry"
    item_id: Ident
    sent_at: AwareDatetime
    free_disk_bytes: int | None = Field(None, ge=0)
    total_disk_bytes: int | None = Field(None, ge=0)
    media_bytes: int | None = Field(None, ge=0)
    queue_depth: dict[str, int] = Field(default_factory=dict)
    queue_bytes: int | None = Field(None, ge=0)
    oldest_unsent_age_s: float | None = Field(None, ge=0)
    cpu_temp_c: float | None = None
    uptime_s: float | None = Field(None, ge=0)
    clock_source: str | None = Field(None, max_length=64)
    clock_synced: bool | None = None
    model_version: str | None = Field(None, max_length=255)
    agent_version: str | None = Field(None, max_length=64)
    last_sync_at: AwareDatetime | None = None
    disk_full: bool | None = None
    # v2 (docs/protocol.md, "Versioning rule"): full-resolution frames of blank events held in
    # doubt (blank_media_policy "defer"): on the card, not in the cloud, the first unsent
    # frames retention gives up. A v1 heartbeat stays exactly what v1 was: without them.
    v: Literal[1, 2, 3] = PROTOCOL_VERSION  # type: ignore[assignment]
    deferred_blank_frames: int | None = Field(None, ge=0)
    deferred_blank_bytes: int | None = Field(None, ge=0)
    # v3: the power room's figures (docs/power.md, docs/energy.md). The energy counters are
    # cumulative since ``counters_since`` (the first start of the trap's data dir), over
    # ``counted_s`` seconds of agent time; ``days_left`` is the trap's own estimate.
    power_profile: PowerProfile | None = None
    board: str | None = Field(None, max_length=16, pattern=r"^[a-z0-9]+$")
    battery_pct: float | None = Field(None, ge=0, le=100)
    battery_v: float | None = Field(None, ge=0, le=1000)
    battery_wh: float | None = Field(None, gt=0, le=100000)  # usable capacity, from config
    shed_level: int | None = Field(None, ge=0, le=len(SHED_STEPS))
    radio_on: bool | None = None
    counters_since: AwareDatetime | None = None
    counted_s: float | None = Field(None, ge=0)
    camera_on_s: float | None = Field(None, ge=0)
    radio_on_s: float | None = Field(None, ge=0)
    captures: int | None = Field(None, ge=0)
    cpu_s: dict[Room, Annotated[float, Field(ge=0)]] | None = Field(None, max_length=32)
    days_left: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _fields_of_later_versions(self) -> Telemetry:
        if self.v == 1 and (
            self.deferred_blank_frames is not None or self.deferred_blank_bytes is not None
        ):
            raise ValueError("deferredBlankFrames/deferredBlankBytes need v=2")
        if self.v < TELEMETRY_POWER_VERSION:
            present = [name for name in _POWER_FIELDS if getattr(self, name) is not None]
            if present:
                names = "/".join(_wire_name(name) for name in present)
                raise ValueError(f"{names} need v={TELEMETRY_POWER_VERSION}")
        return self

    @property
    def shed_steps(self) -> tuple[str, ...]:
        """The shedding steps in force, by name (docs/power.md)."""
        return SHED_STEPS[: self.shed_level or 0]


_POWER_FIELDS = (
    "power_profile",
    "board",
    "battery_pct",
    "battery_v",
    "battery_wh",
    "shed_level",
    "radio_on",
    "counters_since",
    "counted_s",
    "camera_on_s",
    "radio_on_s",
    "captures",
    "cpu_s",
    "days_left",
)


class Status(Envelope):
    """Retained presence. Topic ``up/status``; the last will says ``offline``."""

    type: Literal["status"] = "status"
    state: Literal["online", "offline"]
    agent_version: str | None = Field(None, max_length=64)
    since: AwareDatetime | None = None


class DeviceEvent(Envelope):
    """Something an operator should know (disk full, camera failed). Topic ``up/event``."""

    type: Literal["device_event"] = "device_event"
    item_id: Ident
    at: AwareDatetime
    severity: Severity
    code: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.]+$")
    message: str = Field("", max_length=2000)


class Ack(Envelope):
    """Ingest has durably stored ``chunk`` of ``item_id`` (or all of it: ``"complete"``)."""

    type: Literal["ack"] = "ack"
    item_id: Ident
    chunk: Annotated[int, Field(ge=0)] | Literal["complete"] = Field(
        "complete", union_mode="left_to_right"
    )
    duplicate: bool = False


class AckEntry(WireModel):
    item_id: Ident
    chunk: Annotated[int, Field(ge=0)] | Literal["complete"] = Field(
        "complete", union_mode="left_to_right"
    )
    duplicate: bool = False


class AckBatch(Envelope):
    """Several acks for one device in one message (ingest answers a whole batch at once)."""

    type: Literal["acks"] = "acks"
    acks: list[AckEntry] = Field(min_length=1, max_length=5000)

    def expand(self) -> list[Ack]:
        return [
            Ack(device_id=self.device_id, item_id=a.item_id, chunk=a.chunk, duplicate=a.duplicate)
            for a in self.acks
        ]


def pack_acks(acks: list[Ack], max_payload_bytes: int) -> list[Ack | AckBatch]:
    """Group one device's acks into as few messages as fit ``max_payload_bytes`` each."""
    if len(acks) <= 1:
        return list(acks)
    out: list[Ack | AckBatch] = []
    group: list[AckEntry] = []
    size = 120  # envelope bytes around the list, generously
    for ack in acks:
        entry = AckEntry(item_id=ack.item_id, chunk=ack.chunk, duplicate=ack.duplicate)
        entry_size = len(entry.model_dump_json(by_alias=True)) + 1
        if group and size + entry_size > max_payload_bytes:
            out.append(AckBatch(device_id=ack.device_id, acks=group))
            group, size = [], 120
        group.append(entry)
        size += entry_size
    out.append(AckBatch(device_id=acks[0].device_id, acks=group))
    return out


class ErrorReply(Envelope):
    """Ingest refused ``item_id``. ``restart``: resend from chunk 0 (the assembled file was bad)."""

    type: Literal["error"] = "error"
    item_id: Ident
    reason: str = Field(min_length=1, max_length=64)
    detail: str = Field("", max_length=1000)
    retryable: bool = True
    restart: bool = False


# -- OTA downlink (docs/ota.md): desired model, desired config, commands --------------------
# Replies and progress travel up as ``device_event`` messages (codes ``model.*``, ``config.*``,
# ``command.*``), so ingest stores them without knowing about OTA.

PackName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
PackVersion = Annotated[str, Field(max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$")]


class DesiredModel(Envelope):
    """The pack this device should run. Topic ``down/model``, retained. ``manifest`` is the
    signed manifest verbatim; file ``F`` of the pack is fetched from ``url + "/" + F``."""

    type: Literal["desired_model"] = "desired_model"
    rollout_id: Ident
    name: PackName
    version: PackVersion
    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://")
    manifest: dict[str, Any]
    published_at: AwareDatetime


class DesiredConfig(Envelope):
    """Remote-changeable settings, ``{section: {key: value}}``. Topic ``down/config``, retained.
    ``version`` only grows; the device reports the version it applied."""

    type: Literal["desired_config"] = "desired_config"
    version: int = Field(ge=1)
    values: dict[str, dict[str, Any]]
    published_at: AwareDatetime


class Command(Envelope):
    """One-shot request (``sync-now``, ``capture-test``, ``restart-agent``,
    ``reset-site-memory``). Topic ``down/command``, never retained. Unknown names are answered
    with an error report."""

    type: Literal["command"] = "command"
    command_id: Ident
    name: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)
    issued_at: AwareDatetime


UpMessage = CaptureMeta | MediaChunk | Telemetry | Status | DeviceEvent
DownMessage = Ack | AckBatch | ErrorReply | DesiredModel | DesiredConfig | Command
Message = Annotated[UpMessage | DownMessage, Field(discriminator="type")]
_MESSAGE = TypeAdapter(Message)
_TYPES = {
    "capture",
    "chunk",
    "telemetry",
    "status",
    "device_event",
    "ack",
    "acks",
    "error",
    "desired_model",
    "desired_config",
    "command",
}

UP_SUFFIX_OF: dict[str, str] = {
    "capture": "meta",
    "chunk": "media",
    "telemetry": "telemetry",
    "status": "status",
    "device_event": "event",
}
# An error answers an item just as an ack does, so both share the ack topic and one handler.
DOWN_SUFFIX_OF: dict[str, str] = {
    "ack": "ack",
    "acks": "ack",
    "error": "ack",
    "desired_model": "model",
    "desired_config": "config",
    "command": "command",
}


# -- encoding -------------------------------------------------------------------------------


def _header_json(chunk: MediaChunk) -> bytes:
    return chunk.model_dump_json(by_alias=True).encode()


def encode(message: UpMessage | DownMessage) -> bytes:
    """The payload bytes for one message (the same bytes on MQTT and Pub/Sub)."""
    if isinstance(message, MediaChunk):
        header = _header_json(message)
        if len(header) > CHUNK_HEADER_MAX:
            raise ProtocolError("too_large", f"chunk header is {len(header)} bytes")
        return _CHUNK_PREFIX.pack(CHUNK_MAGIC, len(header)) + header + message.data
    return message.model_dump_json(by_alias=True, exclude_none=True).encode()


def _validate(obj: Any) -> UpMessage | DownMessage:
    if not isinstance(obj, dict):
        raise ProtocolError("malformed", "a message must be a JSON object")
    if "v" not in obj:
        raise ProtocolError("unsupported_version", "no protocol version 'v'")
    spoken = _LATER_VERSIONS.get(str(obj.get("type")), (PROTOCOL_VERSION,))
    if obj["v"] not in spoken or isinstance(obj["v"], bool):
        versions = " or ".join(f"v={v}" for v in spoken)
        raise ProtocolError("unsupported_version", f"v={obj['v']!r}, this side speaks {versions}")
    if obj.get("type") not in _TYPES:
        raise ProtocolError("unknown_type", f"type={obj.get('type')!r}")
    try:
        return _MESSAGE.validate_python(obj)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"][1:]) or "(message)"
        raise ProtocolError("invalid_fields", f"{where}: {err['msg']}") from exc


def decode(payload: bytes, *, max_bytes: int | None = None) -> UpMessage | DownMessage:
    """Parse and validate one payload; anything wrong raises ``ProtocolError`` with a reason."""
    if max_bytes is not None and len(payload) > max_bytes:
        raise ProtocolError("too_large", f"{len(payload)} bytes > limit {max_bytes}")
    if payload[:4] == CHUNK_MAGIC:
        return _decode_chunk(payload)
    if len(payload) > JSON_MESSAGE_MAX:
        raise ProtocolError("too_large", f"JSON message of {len(payload)} bytes")
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError("malformed", f"not a JSON message or chunk frame: {exc}") from exc
    message = _validate(obj)
    if isinstance(message, MediaChunk):
        raise ProtocolError("malformed", "chunks travel as binary frames, not JSON")
    return message


def _decode_chunk(payload: bytes) -> MediaChunk:
    if len(payload) < _CHUNK_PREFIX.size:
        raise ProtocolError("malformed", "truncated chunk frame")
    _, header_len = _CHUNK_PREFIX.unpack_from(payload)
    if header_len > CHUNK_HEADER_MAX or _CHUNK_PREFIX.size + header_len > len(payload):
        raise ProtocolError("malformed", f"chunk header length {header_len} is impossible")
    start = _CHUNK_PREFIX.size
    try:
        header = json.loads(payload[start : start + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("malformed", f"chunk header is not JSON: {exc}") from exc
    if isinstance(header, dict) and "data" in header:
        raise ProtocolError("invalid_fields", "data: not allowed in the chunk header")
    message = _validate(header)
    if not isinstance(message, MediaChunk):
        raise ProtocolError("malformed", f"a chunk frame carries type={message.type!r}")
    data = payload[start + header_len :]
    if len(data) != message.expected_length:
        raise ProtocolError(
            "invalid_fields",
            f"chunk {message.index} has {len(data)} bytes, header implies "
            f"{message.expected_length}",
            header=message,
        )
    if sha256_hex(data) != message.chunk_sha256:
        raise ProtocolError(
            "chunk_sha256_mismatch", f"chunk {message.index} of {message.media_id}", header=message
        )
    return message.model_copy(update={"data": data})


# -- chunking -------------------------------------------------------------------------------


def chunk_overhead(device_id: str, item_id: str, media_id: str, file_mediatype: str) -> int:
    """Bytes a chunk frame adds to its data, at worst (ten-digit numbers, longest kind)."""
    big = 9_999_999_999
    probe = MediaChunk(
        device_id=device_id,
        item_id=item_id,
        media_id=media_id,
        kind="thumbnail",
        file_mediatype=file_mediatype,
        index=0,
        count=1,
        chunk_size=big,
        total_size=big,
        sha256="0" * 64,
        chunk_sha256="0" * 64,
    )
    # index and count are probed at one digit; a real chunk may need six more digits for each.
    header = _header_json(probe)
    return _CHUNK_PREFIX.size + len(header) + 12


def split_media(
    data: bytes,
    *,
    max_payload_bytes: int,
    device_id: str,
    item_id: str,
    media_id: str,
    kind: MediaKind,
    file_mediatype: str = "image/jpeg",
    start: int = 0,
) -> Iterator[MediaChunk]:
    """Cut a file into chunks whose encoded frames each fit ``max_payload_bytes``.

    The chunk size is a pure function of the file and the limit, so a resumed upload (``start``
    = first chunk not yet acknowledged) cuts exactly the same chunks as the first attempt.
    """
    budget = max_payload_bytes - chunk_overhead(device_id, item_id, media_id, file_mediatype)
    if budget < 1:
        raise ProtocolError("too_large", f"max payload {max_payload_bytes} leaves no room for data")
    chunk_size = min(budget, max(1, len(data)))
    count = max(1, -(-len(data) // chunk_size))
    whole = sha256_hex(data)
    for index in range(start, count):
        # A one-chunk file is its only chunk: neither a copy of the bytes nor a second hash.
        part = data if count == 1 else data[index * chunk_size : (index + 1) * chunk_size]
        yield MediaChunk(
            device_id=device_id,
            item_id=item_id,
            media_id=media_id,
            kind=kind,
            file_mediatype=file_mediatype,
            index=index,
            count=count,
            chunk_size=chunk_size,
            total_size=len(data),
            sha256=whole,
            chunk_sha256=whole if count == 1 else sha256_hex(part),
            data=part,
        )


# -- topics ---------------------------------------------------------------------------------

_TOPIC_RE = re.compile(r"^camtrap/([A-Za-z0-9_.-]{1,64})/(up|down)/([a-z]+)$")


def up_topic(device_id: str, suffix: str) -> str:
    if suffix not in UP_SUFFIXES:
        raise ValueError(f"unknown up topic suffix {suffix!r}")
    return f"{TOPIC_ROOT}/{device_id}/up/{suffix}"


def down_topic(device_id: str, suffix: str) -> str:
    if suffix not in DOWN_SUFFIXES:
        raise ValueError(f"unknown down topic suffix {suffix!r}")
    return f"{TOPIC_ROOT}/{device_id}/down/{suffix}"


def topic_for(message: UpMessage | DownMessage) -> str:
    if message.type in UP_SUFFIX_OF:
        return up_topic(message.device_id, UP_SUFFIX_OF[message.type])
    return down_topic(message.device_id, DOWN_SUFFIX_OF[message.type])


def parse_topic(topic: str) -> tuple[str, str, str]:
    """``camtrap/{device}/{up|down}/{suffix}`` -> (device, direction, suffix).

    Anything else raises ``ProtocolError("bad_topic")``.
    """
    match = _TOPIC_RE.match(topic)
    if not match:
        raise ProtocolError("bad_topic", topic[:200])
    device_id, direction, suffix = match.groups()
    if suffix not in (UP_SUFFIXES if direction == "up" else DOWN_SUFFIXES):
        raise ProtocolError("bad_topic", topic[:200])
    return device_id, direction, suffix


# -- Pub/Sub attributes ------------------------------------------------------------------------

PUBSUB_MAX_ATTRIBUTES = 100
PUBSUB_MAX_ATTRIBUTE_KEY = 256
PUBSUB_MAX_ATTRIBUTE_VALUE = 1024


def pubsub_attributes(message: UpMessage) -> dict[str, str]:
    """Routing and dedup fields copied into Pub/Sub attributes, so subscribers can filter and
    dead-letter without parsing the payload. The payload stays the source of truth."""
    attrs = {"v": str(message.v), "type": message.type, "deviceID": message.device_id}
    attrs["subtopic"] = UP_SUFFIX_OF[message.type]
    item_id = getattr(message, "item_id", None)
    if item_id:
        attrs["itemID"] = item_id
    if isinstance(message, MediaChunk):
        attrs.update(
            mediaID=message.media_id,
            kind=message.kind,
            index=str(message.index),
            count=str(message.count),
        )
    check_pubsub_attributes(attrs)
    return attrs


def check_pubsub_attributes(attrs: dict[str, str]) -> None:
    if len(attrs) > PUBSUB_MAX_ATTRIBUTES:
        raise ProtocolError("too_large", f"{len(attrs)} attributes")
    for key, value in attrs.items():
        if len(key.encode()) > PUBSUB_MAX_ATTRIBUTE_KEY:
            raise ProtocolError("too_large", f"attribute key {key[:40]!r}")
        if len(value.encode()) > PUBSUB_MAX_ATTRIBUTE_VALUE:
            raise ProtocolError("too_large", f"attribute {key!r} value")


def utc_now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)
