"""The model-pack manifest (``camtrap-model-pack/1`` and ``/2``, docs/model-pack.md) as one
pydantic model.

Format 2 adds the pack's ``kind``: a ``full`` model (format 1 is always one), a ``backbone``
(a model whose output is an embedding, which serves no verdict alone) or a ``head`` (labels,
kinds, thresholds and int8 or float16 weights applied to a named backbone's embedding; the
backbone is referenced by the sha256 of its model file, so a head can never be combined with
a model it was not fitted on).

Loading a pack on the device, verifying an over-the-air offer and signing or publishing in the
cloud all read a manifest through ``Manifest.from_document`` and so apply the same rules:

- every file the manifest names is listed in ``files`` under a safe relative name, with a
  sha256 (and, for an OTA offer, a size);
- ``version`` and ``min_agent_version`` are PEP 440 versions, ordered by ``packaging``
  (``device.contracts.versions``);
- ``expires`` is ISO 8601 *with* a UTC offset. A time without one is refused, not guessed: the
  signer's "midnight" and the trap's differ by the time zone, and a manifest that expires
  hours early or late is exactly what an expiry must not allow.

The manifest is validated, never rewritten: signatures cover the document as written (see
``device.contracts.signing``), so callers keep the raw mapping beside the model. Keys the
format does not define (``description``, ``license``, ``installed``, ...) are allowed and kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from device.contracts.versions import Version, parse_version

__all__ = [
    "FORMAT",
    "FORMATS",
    "FORMAT_V2",
    "HEAD_KINDS",
    "HEAD_WEIGHTS",
    "LABEL_FORMATS",
    "MANIFEST_FILES",
    "MODEL_OUTPUTS",
    "PACK_KINDS",
    "RESIZE_MODES",
    "BackboneRef",
    "EmbeddingSpec",
    "FileEntry",
    "FileRef",
    "GoldenSpec",
    "HeadSpec",
    "LabelsSpec",
    "Manifest",
    "ModelSpec",
    "PackError",
    "Preprocess",
    "Signature",
    "safe_name",
]

FORMAT = "camtrap-model-pack/1"
# Format 2: packs that say their kind. A full pack is still written as format 1, so that every
# agent ever shipped reads it; backbones and heads need an agent that knows format 2.
FORMAT_V2 = "camtrap-model-pack/2"
FORMATS = (FORMAT, FORMAT_V2)
PACK_KINDS = ("full", "backbone", "head")
# What each class of a head is evidence of (device.contracts.taxa kinds).
HEAD_KINDS = ("blank", "animal", "human", "vehicle", "object")
HEAD_WEIGHTS = ("int8", "float16")
LABEL_FORMATS = ("plain", "imagenet_wnid_tab_name", "speciesnet")
RESIZE_MODES = ("center_crop", "squash", "pad")
MODEL_OUTPUTS = ("probabilities", "logits")
# The manifest's own files (the local copy and the verbatim signed one an OTA install keeps):
# a manifest cannot checksum itself, so listing either in ``files`` is refused.
MANIFEST_FILES = ("manifest.json", "manifest.signed.json")
_SHA256_HEX = frozenset("0123456789abcdef")


class PackError(ValueError):
    """A pack that cannot be used; the message is one line naming the reason."""


def safe_name(name: str) -> str:
    """``name`` as a relative path inside a pack (``./a//b`` -> ``a/b``); PackError for a name
    that could reach outside it (absolute, ``..``, a backslash, a NUL) or is empty."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name or "\x00" in name:
        raise PackError(f"unsafe file name {name!r}")
    return str(path)


def _expiry_time(value: Any) -> Any:
    if value is None or isinstance(value, datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"expires {value!r} is not ISO 8601") from None
    else:
        raise ValueError(f"expires {value!r} is not an ISO 8601 time")
    if when is not None and when.tzinfo is None:
        raise ValueError(f"expires {value!r} has no UTC offset (an ambiguous time is refused)")
    return when


def _version_text(value: str) -> str:
    parse_version(value)
    return value


def _triple(value: Any) -> Any:
    # A number means the same value for the three RGB channels.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (float(value),) * 3
    if isinstance(value, list) and len(value) == 3:
        return tuple(value)
    raise ValueError("preprocess mean and std must each be a number or 3 numbers")


def _lower_sha256(value: str) -> str:
    digest = value.lower()
    if len(digest) != 64 or not set(digest) <= _SHA256_HEX:
        raise ValueError(f"sha256 {value[:80]!r} is not 64 hex digits")
    return digest


def _one_of(what: str, allowed: tuple[str, ...]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{what} {value!r} unknown (one of {', '.join(allowed)})")
        return value

    return AfterValidator(check)


SafeName = Annotated[str, AfterValidator(safe_name)]
VersionText = Annotated[str, AfterValidator(_version_text)]
ExpiryTime = Annotated[datetime | None, BeforeValidator(_expiry_time)]
Triple = Annotated[tuple[float, float, float], BeforeValidator(_triple)]
ResizeMode = Annotated[str, _one_of("preprocess resize", RESIZE_MODES)]
ModelOutput = Annotated[str, _one_of("model output", MODEL_OUTPUTS)]
LabelFormat = Annotated[str, _one_of("labels format", LABEL_FORMATS)]


class _Part(BaseModel):
    # strict: a version written as a number or a size written as text is a mistake to report,
    # not to coerce. extra="allow": the format has always admitted keys of one's own.
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_absent(cls, data: Any) -> Any:
        # ``"signature": null``, ``"preprocess": null``: the key's default, as it always was.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class FileRef(_Part):
    file: SafeName


class FileEntry(_Part):
    sha256: Annotated[str, AfterValidator(_lower_sha256)]
    size: int | None = Field(None, ge=0)


class Preprocess(_Part):
    resize: ResizeMode = "center_crop"
    mean: Triple = (127.5, 127.5, 127.5)
    std: Triple = (127.5, 127.5, 127.5)


class EmbeddingSpec(_Part):
    """A model's second output: a feature vector of ``size`` values (``[1, size]``) beside the
    scores. TFLite's output order is not a contract, so the runtime finds the embedding by
    this size, or by ``tensor`` (the output tensor's name) when both outputs have one size."""

    size: int = Field(ge=1)
    tensor: str | None = Field(None, min_length=1)


class ModelSpec(FileRef):
    preprocess: Preprocess = Preprocess()
    output: ModelOutput = "probabilities"
    embedding: EmbeddingSpec | None = None


class BackboneRef(_Part):
    """The model a head was fitted on: the sha256 of its model file (the identity that
    counts), and its name, version and embedding size (for people and early refusals)."""

    name: str = Field(min_length=1)
    version: VersionText
    sha256: Annotated[str, AfterValidator(_lower_sha256)]
    embedding_size: int = Field(ge=1)


class HeadSpec(FileRef):
    """A head's weights (``file``, device.contracts.head) and the kind of each class, in
    label order."""

    weights: Annotated[str, _one_of("head weights", HEAD_WEIGHTS)] = "int8"
    kinds: list[Annotated[str, _one_of("head class kind", HEAD_KINDS)]] = Field(min_length=2)


class LabelsSpec(FileRef):
    format: LabelFormat = "plain"


class GoldenSpec(FileRef):
    expect_top: list[str] = Field(default_factory=list)
    top_k: int = Field(5, ge=1)


class Signature(_Part):
    alg: str
    key_id: str
    value: str


# Optional keys whose empty value ("", {}, []) has always meant "absent".
_EMPTY_MEANS_ABSENT = (
    "min_agent_version",
    "expires",
    "taxonomy",
    "geofence",
    "calibration",
    "golden",
)


class Manifest(_Part):
    format: str
    kind: Annotated[str, _one_of("pack kind", PACK_KINDS)] = "full"
    name: str = Field(min_length=1)
    version: VersionText
    min_agent_version: VersionText | None = None
    created: str | None = None
    expires: ExpiryTime = None
    # full and backbone packs: the TFLite model. A head has none: it names its backbone.
    model: ModelSpec | None = None
    # full and head packs: one label per class. A backbone has no classes.
    labels: LabelsSpec | None = None
    backbone: BackboneRef | None = None  # heads only
    head: HeadSpec | None = None  # heads only
    taxonomy: FileRef | None = None
    geofence: FileRef | None = None
    # The blank-threshold table (device.contracts.calibration), measured on a named set.
    calibration: FileRef | None = None
    thresholds: dict[str, float] = Field(default_factory=dict)
    golden: list[GoldenSpec] = Field(default_factory=list)
    files: dict[SafeName, FileEntry]
    signature: Signature | None = None

    @model_validator(mode="before")
    @classmethod
    def _absent_when_empty(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in _EMPTY_MEANS_ABSENT or v}
        return data

    @field_validator("format")
    @classmethod
    def _this_format(cls, value: str) -> str:
        if value not in FORMATS:
            raise ValueError(f"manifest format is not {FORMAT!r} or {FORMAT_V2!r}")
        return value

    @model_validator(mode="after")
    def _parts_of_its_kind(self) -> Manifest:
        if self.kind != "full" and self.format == FORMAT:
            raise ValueError(f"a {self.kind} pack needs format {FORMAT_V2!r}")
        if self.kind == "head":
            if self.model is not None:
                raise ValueError("a head pack has no model: it names its backbone")
            if self.backbone is None or self.head is None or self.labels is None:
                raise ValueError("a head pack needs backbone, head and labels")
        else:
            if self.model is None:
                raise ValueError(f"manifest: model is missing (a {self.kind} pack needs one)")
            if self.backbone is not None or self.head is not None:
                raise ValueError(f"a {self.kind} pack cannot have backbone or head")
            if self.kind == "full" and self.labels is None:
                raise ValueError("manifest: labels is missing")
            if self.kind == "backbone" and self.model.embedding is None:
                raise ValueError("a backbone pack needs model.embedding (its output)")
        return self

    @field_validator("thresholds", mode="before")
    @classmethod
    def _unit_thresholds(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key, number in value.items():
                is_number = isinstance(number, int | float) and not isinstance(number, bool)
                if not is_number or not 0 <= number <= 1:
                    raise ValueError(f"threshold {key!r} must be a number in [0, 1]")
        return value

    @model_validator(mode="after")
    def _every_used_file_is_listed(self) -> Manifest:
        for name in self.files:
            if name in MANIFEST_FILES:
                raise ValueError(f"unsafe file name {name!r} (the manifest cannot list itself)")
        for name in self.referenced_files:
            if name not in self.files:
                raise ValueError(f"{name} is used but has no checksum in manifest files")
        return self

    # -- reading -----------------------------------------------------------------------------

    @classmethod
    def from_document(cls, document: Any) -> Manifest:
        """The manifest a parsed ``manifest.json`` states; PackError in one line if it breaks
        a rule of the format."""
        if not isinstance(document, Mapping):
            raise PackError("manifest.json is not a JSON object")
        try:
            return cls.model_validate(dict(document))
        except ValidationError as exc:
            raise PackError(_first_problem(exc)) from None

    @property
    def referenced_files(self) -> list[str]:
        """Every file the manifest uses besides listing it: model, labels, taxonomy, geofence,
        calibration, golden images."""
        refs: list[FileRef | None] = [
            self.model,
            self.labels,
            self.head,
            self.taxonomy,
            self.geofence,
            self.calibration,
        ]
        return [ref.file for ref in [*refs, *self.golden] if ref is not None]

    @property
    def parsed_version(self) -> Version:
        return parse_version(self.version)

    @property
    def classified_by(self) -> str:
        """``name@version``; a head names its backbone first: ``backbone@v+head@v``."""
        own = f"{self.name}@{self.version}"
        if self.backbone is not None:
            return f"{self.backbone.name}@{self.backbone.version}+{own}"
        return own

    @property
    def model_sha256(self) -> str | None:
        """The sha256 of this pack's model file: what a head's ``backbone.sha256`` names.
        For a head, the backbone it needs."""
        if self.backbone is not None:
            return self.backbone.sha256
        if self.model is None:
            return None
        return self.files[self.model.file].sha256

    # -- the checks that depend on who asks, and when -----------------------------------------

    def check_agent(self, agent_version: str) -> None:
        """PackError unless an agent of ``agent_version`` may run this pack."""
        needed = self.min_agent_version
        if needed is not None and parse_version(agent_version) < parse_version(needed):
            raise PackError(f"needs agent {needed} or newer, this is {agent_version}")

    def check_expiry(self, now: datetime | None = None) -> None:
        """PackError if the manifest expired at or before ``now`` (default: the clock)."""
        moment = now or datetime.now(UTC)
        if self.expires is not None and self.expires <= moment:
            raise PackError(f"expired at {self.expires.isoformat()}")

    def check_offer(self, now: datetime | None = None) -> None:
        """What an over-the-air offer needs beyond a loadable pack: an expiry still ahead (it
        bounds how long a replayed offer stays installable), a size for every file (the
        download is checked and resumed by it), and golden images for the self-test."""
        if self.expires is None:
            raise PackError("manifest has no expiry time")
        self.check_expiry(now)
        for name, entry in self.files.items():
            if entry.size is None:
                raise PackError(f"files[{name!r}] needs a size and a sha256")
        if not self.golden:
            raise PackError("an OTA pack must carry golden images for its self-test")


def _first_problem(exc: ValidationError) -> str:
    """One line for the first thing wrong: our own rules speak for themselves; pydantic's are
    prefixed with where in the manifest they failed."""
    error = exc.errors(include_url=False)[0]
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    where = _where(error["loc"])
    if error["type"] == "missing":
        return f"manifest: {where} is missing"
    return f"manifest: {where}: {error['msg']}"


# Fields whose value is a mapping: the part of a location after them is a key, not a field.
_KEYED_FIELDS = ("files", "thresholds")


def _where(loc: tuple[int | str, ...]) -> str:
    """``files['model.tflite'].size``, ``golden[0].file``: keys and indexes in brackets."""
    text = ""
    keyed = False
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif keyed or not part.isidentifier():
            text += f"[{part!r}]"
        else:
            text += f".{part}" if text else part
        keyed = part in _KEYED_FIELDS and not keyed
    return text or "(manifest)"
