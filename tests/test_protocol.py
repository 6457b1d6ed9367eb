"""The v1 wire protocol: what round-trips, what is refused and why, and how media are cut."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from datetime import datetime

import pytest

from device import protocol
from device.protocol import (
    CHUNK_MAGIC,
    Ack,
    AckBatch,
    AckEntry,
    DeviceEvent,
    ErrorReply,
    MediaChunk,
    ProtocolError,
    Status,
    Telemetry,
)
from tests.support.messages import capture

NOW = protocol.utc_now()


def examples():
    meta, files = capture("trap-01", frames=2)
    (chunk,) = protocol.split_media(
        files[0],
        max_payload_bytes=64 * 1024,
        device_id="trap-01",
        item_id=f"full:{meta.media[0].media_id}",
        media_id=meta.media[0].media_id,
        kind="full",
    )
    return [
        meta,
        chunk,
        Telemetry(
            device_id="trap-01",
            item_id="tel:7",
            sent_at=NOW,
            free_disk_bytes=12_000_000_000,
            queue_depth={"metadata": 3, "thumbnail": 10},
            cpu_temp_c=51.5,
            clock_synced=False,
            last_sync_at=NOW,
        ),
        Status(device_id="trap-01", state="online", agent_version="0.1.0", since=NOW),
        DeviceEvent(
            device_id="trap-01", item_id="ev:1", at=NOW, severity="warning", code="disk_full"
        ),
        Ack(device_id="trap-01", item_id="tel:7", chunk=3),
        Ack(device_id="trap-01", item_id="tel:7", duplicate=True),
        ErrorReply(device_id="trap-01", item_id="full:x", reason="unknown_media", restart=True),
        AckBatch(
            device_id="trap-01",
            acks=[AckEntry(item_id="tel:7"), AckEntry(item_id="full:x", chunk=0, duplicate=True)],
        ),
    ]


@pytest.mark.parametrize("message", examples(), ids=lambda m: m.type)
def test_every_message_type_round_trips_unchanged(message):
    payload = protocol.encode(message)
    assert protocol.decode(payload) == message
    if isinstance(message, MediaChunk):
        assert payload.startswith(CHUNK_MAGIC)
        assert protocol.decode(payload).data == message.data
    else:
        assert json.loads(payload)["v"] == protocol.PROTOCOL_VERSION


def test_json_uses_camtrap_dp_field_names():
    meta, _ = capture("trap-01", frames=1)
    wire = json.loads(protocol.encode(meta))
    assert {"deviceID", "itemID", "event", "media", "observations"} <= wire.keys()
    assert {
        "mediaID",
        "deploymentID",
        "captureMethod",
        "timestamp",
        "fileName",
        "fileMediatype",
    } <= (wire["media"][0].keys())
    assert {
        "observationID",
        "eventID",
        "eventStart",
        "observationType",
        "scientificName",
        "classificationProbability",
        "classifiedBy",
        "observationLevel",
    } <= (wire["observations"][0].keys())
    # Camtrap DP wants every datetime with its offset.
    assert datetime.fromisoformat(wire["media"][0]["timestamp"]).utcoffset() is not None


def test_a_thumbnail_chunk_costs_a_small_header_not_base64():
    data = os.urandom(200_000)
    (chunk,) = protocol.split_media(
        data,
        max_payload_bytes=256 * 1024,
        device_id="trap-01",
        item_id="thumbnail:m1",
        media_id="m1",
        kind="thumbnail",
    )
    overhead = len(protocol.encode(chunk)) - len(data)
    assert overhead < 600


def _telemetry(**changes):
    wire = json.loads(protocol.encode(Telemetry(device_id="trap-01", item_id="t", sent_at=NOW)))
    wire.update(changes)
    return json.dumps(wire).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "malformed"),
        (b"\xff\xfe", "malformed"),
        (b'"a string"', "malformed"),
        (
            json.dumps({"type": "ack", "deviceID": "d", "itemID": "i"}).encode(),
            "unsupported_version",
        ),
        (_telemetry(v=4), "unsupported_version"),
        (_telemetry(type="ack", v=2), "unsupported_version"),
        (_telemetry(v="1"), "unsupported_version"),
        (_telemetry(v=True), "unsupported_version"),
        (_telemetry(type="firmware"), "unknown_type"),
        (_telemetry(type=None), "unknown_type"),
        (_telemetry(surprise=1), "invalid_fields"),
        (_telemetry(deviceID="has/slash"), "invalid_fields"),
        (_telemetry(itemID=".."), "invalid_fields"),
        (_telemetry(sentAt="2026-05-01T12:00:00"), "invalid_fields"),  # no offset
        (_telemetry(freeDiskBytes=-1), "invalid_fields"),
        (b"[" * 100_000, "malformed"),
    ],
    ids=[
        "empty",
        "not-utf8",
        "not-object",
        "no-version",
        "v4-telemetry",
        "v2-ack",
        "v-as-string",
        "v-as-bool",
        "unknown-type",
        "null-type",
        "extra-field",
        "bad-device-id",
        "dot-dot-id",
        "naive-datetime",
        "negative",
        "deep-nesting",
    ],
)
def test_bad_json_is_refused_with_a_reason(payload, reason):
    with pytest.raises(ProtocolError) as refused:
        protocol.decode(payload)
    assert refused.value.reason == reason


def test_chunks_are_refused_as_json():
    chunk = examples()[1]
    as_json = chunk.model_dump_json(by_alias=True).encode()
    with pytest.raises(ProtocolError, match="binary frames"):
        protocol.decode(as_json)


def _frame(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return CHUNK_MAGIC + struct.pack(">H", len(raw)) + raw + data


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h, d: (h, d + b"x"), "invalid_fields"),
        (lambda h, d: (h, d[:-1]), "invalid_fields"),
        (lambda h, d: ({**h, "chunkSha256": "0" * 64}, d), "chunk_sha256_mismatch"),
        (lambda h, d: ({**h, "index": 5}, d), "invalid_fields"),
        (lambda h, d: ({**h, "count": 9}, d), "invalid_fields"),
        (lambda h, d: ({**h, "data": "AAAA"}, d), "invalid_fields"),
        (lambda h, d: ({**h, "type": "telemetry"}, d), "invalid_fields"),
        (lambda h, d: ({**h, "v": 0}, d), "unsupported_version"),
        (lambda h, d: ({**h, "kind": "raw"}, d), "invalid_fields"),
    ],
    ids=[
        "extra-byte",
        "short",
        "sha",
        "index",
        "count",
        "data-in-header",
        "type",
        "version",
        "kind",
    ],
)
def test_bad_chunk_frames_are_refused_with_a_reason(mutate, reason):
    data = os.urandom(1000)
    header = {
        "v": 1,
        "deviceID": "trap-01",
        "type": "chunk",
        "itemID": "full:m",
        "mediaID": "m",
        "kind": "full",
        "index": 0,
        "count": 1,
        "chunkSize": 1000,
        "totalSize": 1000,
        "sha256": hashlib.sha256(data).hexdigest(),
        "chunkSha256": hashlib.sha256(data).hexdigest(),
    }
    assert protocol.decode(_frame(header, data)).data == data  # the unmutated frame is fine
    with pytest.raises(ProtocolError) as refused:
        protocol.decode(_frame(*mutate(header, data)))
    assert refused.value.reason == reason


def test_truncated_frames_are_malformed():
    for payload in (
        CHUNK_MAGIC,
        CHUNK_MAGIC + b"\x00",
        CHUNK_MAGIC + struct.pack(">H", 50) + b"{}",
    ):
        with pytest.raises(ProtocolError) as refused:
            protocol.decode(payload)
        assert refused.value.reason == "malformed"


def test_a_size_limit_is_enforced_before_parsing():
    with pytest.raises(ProtocolError) as refused:
        protocol.decode(b"{" + b" " * 100 + b"}", max_bytes=50)
    assert refused.value.reason == "too_large"


@pytest.mark.parametrize("limit", [1024, 4096, 65_536, 1_000_000])
@pytest.mark.parametrize("size", [0, 1, 999, 200_000])
def test_split_media_fits_every_frame_under_the_limit_and_reassembles(limit, size):
    data = os.urandom(size)
    chunks = list(
        protocol.split_media(
            data,
            max_payload_bytes=limit,
            device_id="trap-01",
            item_id="full:m",
            media_id="m",
            kind="full",
        )
    )
    assert all(len(protocol.encode(c)) <= limit for c in chunks)
    assert b"".join(protocol.decode(protocol.encode(c)).data for c in chunks) == data
    assert [c.index for c in chunks] == list(range(chunks[0].count))


def test_a_resumed_split_cuts_the_same_chunks():
    data = os.urandom(50_000)
    kwargs = dict(
        max_payload_bytes=4096, device_id="trap-01", item_id="full:m", media_id="m", kind="full"
    )
    everything = list(protocol.split_media(data, **kwargs))
    resumed = list(protocol.split_media(data, start=5, **kwargs))
    assert resumed == everything[5:]


def test_a_limit_too_small_for_any_data_is_refused():
    with pytest.raises(ProtocolError, match="no room"):
        list(
            protocol.split_media(
                b"abc", max_payload_bytes=100, device_id="d", item_id="i", media_id="m", kind="full"
            )
        )


def test_topics_put_the_device_id_where_acls_can_match_it():
    meta, _ = capture("trap-01", frames=1)
    assert protocol.topic_for(meta) == "camtrap/trap-01/up/meta"
    assert protocol.topic_for(examples()[1]) == "camtrap/trap-01/up/media"
    assert protocol.topic_for(Ack(device_id="trap-01", item_id="x")) == "camtrap/trap-01/down/ack"
    assert protocol.parse_topic("camtrap/trap-01/up/telemetry") == ("trap-01", "up", "telemetry")
    for bad in (
        "camtrap/+/up/meta",
        "camtrap/a/b/up/meta",
        "camtrap/a/up/selfie",
        "other/a/up/meta",
    ):
        with pytest.raises(ProtocolError):
            protocol.parse_topic(bad)


def test_observations_must_belong_to_the_event_and_its_media():
    meta, _ = capture("trap-01", frames=1)
    wire = json.loads(protocol.encode(meta))
    wire["observations"][0]["mediaID"] = "not-in-this-message"
    with pytest.raises(ProtocolError, match="unknown mediaID"):
        protocol.decode(json.dumps(wire).encode())


@pytest.mark.parametrize("message", examples()[:5], ids=lambda m: m.type)
def test_pubsub_attributes_carry_the_ids_within_limits(message):
    attrs = protocol.pubsub_attributes(message)
    assert attrs["deviceID"] == "trap-01"
    assert attrs["v"] == "1"
    assert len(attrs) <= 100
    assert all(len(v.encode()) <= 1024 for v in attrs.values())
    if hasattr(message, "item_id"):
        assert attrs["itemID"] == message.item_id


def test_acks_for_one_device_pack_into_messages_that_fit_the_limit():
    acks = [
        Ack(device_id="trap-01", item_id=f"thumbnail:{i:036d}", chunk=i % 3) for i in range(500)
    ]
    packed = protocol.pack_acks(acks, max_payload_bytes=4000)
    assert len(packed) > 1
    assert all(len(protocol.encode(m)) <= 4000 for m in packed)
    assert [a for m in packed for a in m.expand()] == acks
    assert protocol.pack_acks(acks[:1], 4000) == acks[:1]  # a lone ack stays an ack


def test_telemetry_v2_carries_deferred_blanks_and_v1_stays_as_it_was():
    v2 = Telemetry(
        v=protocol.TELEMETRY_VERSION,
        device_id="trap-01",
        item_id="t",
        sent_at=NOW,
        deferred_blank_frames=3,
        deferred_blank_bytes=1200,
    )
    wire = json.loads(protocol.encode(v2))
    assert wire["v"] == 2 and wire["deferredBlankBytes"] == 1200
    assert protocol.decode(protocol.encode(v2)) == v2
    # A v1 heartbeat with a v2 field is refused: within a version nothing changes.
    with pytest.raises(ProtocolError) as err:
        protocol.decode(_telemetry(deferredBlankBytes=5))
    assert err.value.reason == "invalid_fields"
