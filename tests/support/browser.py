"""A review-page world for tests: an ingest root filled through the real ingest path, user
accounts, a ``camtrap-cloud serve`` process, and headless Debian Chromium via Playwright."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image, ImageDraw

from cloud_stub.ingest.core import Incoming, Ingestor
from cloud_stub.review.users import UserStore, users_path
from device.protocol import (
    CaptureMeta,
    Event,
    Media,
    Observation,
    Telemetry,
    encode,
    split_media,
)
from tests.support.ports import adopt_port, check_config_ports

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Own world: Chromium is a subprocess the socket guard cannot see. Names other than
    # localhost resolve to nothing, so only the loopback servers these tests start are reachable
    # (Playwright drives it over --remote-debugging-pipe: no DevTools port either).
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
PASSWORDS = {
    "vera": ("viewer", "viewer-password-1"),
    "rita": ("reviewer", "reviewer-password-1"),
    "adam": ("admin", "admin-password-1"),
}
MODEL = "efficientnet-lite0-imagenet@1.0.0"
T0 = datetime(2026, 5, 1, 21, 30, tzinfo=UTC)


@dataclass
class Spec:
    """One burst and what the machine said about it."""

    device: str
    start: datetime
    type: str = "animal"
    scientific: str | None = None
    common: str | None = None
    level: str | None = None
    taxonomy: str | None = None
    probability: float | None = 0.9
    blank_score: float = 0.05
    geofenced: bool = False
    frames: int = 2
    colour: tuple[int, int, int] = (90, 120, 70)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))


FOX = {
    "scientific": "Vulpes vulpes",
    "common": "red fox",
    "level": "species",
    "taxonomy": "mammalia;carnivora;canidae;vulpes;vulpes",
}
LEOPARD = {
    "scientific": "Panthera pardus",
    "common": "leopard",
    "level": "species",
    "taxonomy": "mammalia;carnivora;felidae;panthera;pardus",
}
FELIDAE = {
    "scientific": "Felidae",
    "common": None,
    "level": "family",
    "taxonomy": "mammalia;carnivora;felidae;;",
}


def default_specs() -> list[Spec]:
    """A small night of two traps: confident foxes, an unsure leopard, a geofenced cat,
    a blank, a person and a vehicle."""
    hour = timedelta(hours=1)
    return [
        Spec("trap-a", T0, **FOX, probability=0.93, colour=(150, 90, 40)),
        Spec("trap-a", T0 + hour, **LEOPARD, probability=0.41, colour=(170, 150, 60)),
        Spec("trap-b", T0 + 2 * hour, **FELIDAE, probability=0.7, geofenced=True),
        Spec("trap-b", T0 + 3 * hour, type="blank", probability=0.97, blank_score=0.97),
        Spec(
            "trap-a",
            T0 + 4 * hour,
            type="human",
            scientific="Homo sapiens",
            common="human",
            level="species",
            taxonomy="mammalia;primates;hominidae;homo;sapiens",
            probability=0.88,
            colour=(60, 60, 160),
        ),
        Spec("trap-b", T0 + timedelta(days=1), type="vehicle", probability=0.8),
        Spec("trap-a", T0 + timedelta(days=1, hours=1), **FOX, probability=0.55),
    ]


def jpeg(size: tuple[int, int], colour: tuple[int, int, int], text: str) -> bytes:
    """A real JPEG that looks like something: a scene tint, a 'subject' and a caption."""
    image = Image.new("RGB", size, (30, 40, 30))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.rectangle((0, int(h * 0.7), w, h), fill=(50, 70, 40))
    draw.ellipse((w // 3, h // 3, w // 3 + w // 4, h // 3 + h // 5), fill=colour)
    draw.text((8, 8), text, fill=(240, 240, 240))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def _machine(spec: Spec, event: Event, media_id: str | None) -> Observation:
    rollup: list[dict[str, Any]] = []
    if spec.geofenced:
        rollup = [
            {"level": "species", "taxon": LEOPARD["taxonomy"], "score": 0.6, "geofenced": True},
            {"level": "genus", "taxon": "mammalia;carnivora;felidae;panthera;", "score": 0.6},
            {"level": "family", "taxon": FELIDAE["taxonomy"], "score": 0.7},
        ]
    return Observation(
        observation_id=str(uuid.uuid4()),
        deployment_id=event.deployment_id,
        event_id=event.event_id,
        media_id=media_id,
        event_start=event.event_start,
        event_end=event.event_end or event.event_start,
        observation_level="media" if media_id else "event",
        observation_type=spec.type,
        scientific_name=spec.scientific,
        common_name=spec.common,
        taxon_level=spec.level,
        taxonomy=spec.taxonomy,
        classified_by=MODEL,
        classification_timestamp=event.event_start,
        classification_probability=spec.probability,
        blank_score=spec.blank_score,
        details={"rollup": rollup, "top": [{"label": spec.common or spec.type, "score": 0.5}]},
    )


def ingest_specs(root: Path, specs: list[Spec], *, telemetry: int = 6) -> Ingestor:
    """Feed ``specs`` through the real ingest (capture messages, then chunked media)."""
    ingestor = Ingestor(root)
    for spec in specs:
        deployment = f"dep-{spec.device}"
        event = Event(
            event_id=spec.event_id,
            deployment_id=deployment,
            capture_method="activityDetection",
            trigger_source="pir",
            event_start=spec.start,
            event_end=spec.start + timedelta(seconds=spec.frames),
            frame_count=spec.frames,
            clock_source="ntp",
            clock_synced=True,
            blank_score=spec.blank_score,
        )
        media: list[Media] = []
        files: list[tuple[str, bytes, bytes]] = []
        for seq in range(spec.frames):
            media_id = str(uuid.uuid4())
            caption = f"{spec.device} {spec.common or spec.type} #{seq}"
            full = jpeg((640, 480), spec.colour, caption)
            thumb = jpeg((160, 120), spec.colour, caption)
            files.append((media_id, full, thumb))
            media.append(
                Media(
                    media_id=media_id,
                    event_id=event.event_id,
                    deployment_id=deployment,
                    seq=seq,
                    capture_method="activityDetection",
                    timestamp=spec.start + timedelta(seconds=seq),
                    file_name=f"{media_id}.jpg",
                    sha256=hashlib.sha256(full).hexdigest(),
                    size=len(full),
                    width=640,
                    height=480,
                    clock_source="ntp",
                    clock_synced=True,
                )
            )
        observations = [_machine(spec, event, None)]
        observations += [_machine(spec, event, m.media_id) for m in media]
        meta = CaptureMeta(
            device_id=spec.device,
            item_id=f"capture:{event.event_id}",
            event=event,
            media=media,
            observations=observations,
        )
        _feed(ingestor, spec.device, "meta", encode(meta))
        for media_id, full, thumb in files:
            for kind, data in (("thumbnail", thumb), ("full", full)):
                for chunk in split_media(
                    data,
                    max_payload_bytes=256 * 1024,
                    device_id=spec.device,
                    item_id=f"{kind}:{media_id}",
                    media_id=media_id,
                    kind=kind,
                ):
                    _feed(ingestor, spec.device, "media", encode(chunk))
    record = getattr(ingestor.store, "record_deployment", None)
    for device in sorted({s.device for s in specs}):
        if record is not None:
            # What provisioning records (the Camtrap DP export refuses deployments without it).
            record(f"dep-{device}", device, latitude=-1.29, longitude=36.82)
        for i in range(telemetry):
            msg = Telemetry(
                device_id=device,
                item_id=f"telemetry:{device}:{i}",
                sent_at=T0 + timedelta(minutes=10 * i),
                free_disk_bytes=(20 - i) * 10**9,
                total_disk_bytes=32 * 10**9,
                queue_depth={"capture": i % 3, "media": 2 * i},
                cpu_temp_c=40.0 + 1.5 * i,
                model_version=MODEL,
                agent_version="0.1.0",
                last_sync_at=T0 + timedelta(minutes=10 * i),
            )
            _feed(ingestor, device, "telemetry", encode(msg))
    return ingestor


def _feed(ingestor: Ingestor, device: str, subtopic: str, payload: bytes) -> None:
    outcome = ingestor.handle(
        Incoming(f"camtrap/{device}/up/{subtopic}", device, subtopic, payload)
    )
    assert outcome.rejected is None, outcome.rejected


@functools.cache
def _accounts_file() -> bytes:
    """The accounts database holding PASSWORDS, made once per process through the real store.

    Hashing is scrypt and slow on purpose (a tenth of a second a password); the review tests
    would spend more time on it than on their own checks, so each world gets a copy instead.
    """
    with tempfile.TemporaryDirectory() as scratch:
        store = UserStore(users_path(Path(scratch)))
        for name, (role, password) in PASSWORDS.items():
            store.add(name, password, role)
        return store.path.read_bytes()


def add_users(root: Path) -> UserStore:
    """PASSWORDS' accounts in ``root``'s own accounts file (a copy, see ``_accounts_file``)."""
    path = users_path(root)
    if path.exists():  # accounts already there: add to them the slow way
        store = UserStore(path)
        for name, (role, password) in PASSWORDS.items():
            store.add(name, password, role)
        return store
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_accounts_file())
    return UserStore(path)


@dataclass
class Served:
    url: str
    process: subprocess.Popen[str]
    output: list[str]


@contextmanager
def serve(root: Path, *extra: str) -> Iterator[Served]:
    """``camtrap-cloud serve`` on a free loopback port, stopped with SIGTERM at the end."""
    cli = Path(sys.executable).with_name("camtrap-cloud")
    cmd = [str(cli), "serve", "--root", str(root), "--port", "0", "--insecure-http", *extra]
    process = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    url = None
    while True:  # everything up to the last line of the banner
        line = lines.get(timeout=60)
        if not line:
            raise RuntimeError("serve exited:\n" + "".join(output))
        if line.startswith("review page: "):
            url = line.split(": ", 1)[1].strip().rstrip("/")
        if line.startswith("stop with Ctrl-C") and url:
            break
    # The server chose its port (--port 0) and printed it: ours, and it must be on loopback.
    adopt_port(urlsplit(url).port or 0)
    check_config_ports({"review_url": url}, "camtrap-cloud serve")
    try:
        yield Served(url, process, output)
    finally:
        process.terminate()
        process.wait(timeout=30)


def chromium_available() -> bool:
    if not os.path.exists(CHROMIUM):
        return False
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return shutil.which(CHROMIUM) is not None


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A persistent-context Chromium with a fresh user-data-dir; yields the context."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 860},
        )
        try:
            yield context
        finally:
            context.close()
